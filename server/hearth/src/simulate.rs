//! `hearth simulate`: runs the world headless — no database, no network — as
//! fast as it goes for N ticks, and reports what happened and how long the
//! ticks took. The memory stream runs beside it on its own thread, fed each
//! tick's events, as it does in `hearth serve`. Touches only the `Sim` and
//! the stream it builds.

use std::fmt;
use std::sync::mpsc;
use std::time::Instant;

use serde::Serialize;

use hearth_content::Content;
use hearth_mind::stream::{MemoryStream, StreamConfig, StreamStats};
use hearth_world::mind::RuleMind;
use hearth_world::{Sim, SimConfig, Stats, WorldEvent};

/// Tick durations, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timing {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: u64,
}

impl Timing {
    pub fn of(durations_us: &mut [u64]) -> Self {
        if durations_us.is_empty() {
            return Self::default();
        }
        durations_us.sort_unstable();
        let at = |q: f64| durations_us[((durations_us.len() - 1) as f64 * q).round() as usize];
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: durations_us[durations_us.len() - 1],
            mean: durations_us.iter().sum::<u64>() / durations_us.len() as u64,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub agents: usize,
    pub locations: usize,
    pub map: String,
    pub seed: u64,
    pub ticks: u64,
    /// Game time reached, e.g. "Tue 06:00, day 1".
    pub game_time: String,
    pub game_minutes: u64,
    pub tick_us: Timing,
    /// Wall time of the whole run, milliseconds.
    pub wall_ms: u64,
    pub events: u64,
    #[serde(flatten)]
    pub stats: Stats,
    /// What the agents remembered.
    pub memories: StreamStats,
    pub state_hash: String,
}

/// Runs `ticks` ticks of a world of `content`.
pub fn run(content: Content, config: SimConfig, ticks: u64) -> Report {
    run_with(content, config, ticks, |_, _, _| {})
}

/// Like [`run`], calling `each_tick(tick, duration_us, events)` after every tick.
pub fn run_with(
    content: Content,
    config: SimConfig,
    ticks: u64,
    mut each_tick: impl FnMut(u64, u64, usize),
) -> Report {
    let locations = content.map.locations.len();
    let map = format!("{}×{}", content.map.width, content.map.height);
    let seed = config.seed;
    let mut stream = MemoryStream::new(StreamConfig::default(), &content.agents, &content.map);
    let mut sim = Sim::new(content, config);
    let mut durations = Vec::with_capacity(ticks as usize);
    let mut events = 0u64;
    let started = Instant::now();
    // the stream keeps up on the other core; a bounded queue so it cannot
    // fall arbitrarily behind
    let (tx, rx) = mpsc::sync_channel::<(u64, Vec<(u64, WorldEvent)>)>(64);
    let memories = std::thread::scope(|scope| {
        let defs = sim.defs().clone();
        let start = sim.clock().seconds;
        let remembering = scope.spawn(move || {
            stream.seed(&defs, &RuleMind, start);
            for (now, batch) in rx {
                stream.ingest(now, &batch, &RuleMind);
            }
            stream.stats()
        });
        for _ in 0..ticks {
            let t = Instant::now();
            sim.step();
            let us = t.elapsed().as_micros() as u64;
            durations.push(us);
            let batch = sim.drain_events();
            let n = batch.len();
            events += n as u64;
            // the stream only stops early if its thread panicked; the join says so
            let _ = tx.send((sim.clock().seconds, batch));
            each_tick(sim.clock().tick, us, n);
        }
        drop(tx);
        remembering.join().unwrap_or_default()
    });
    let wall_ms = started.elapsed().as_millis() as u64;
    Report {
        agents: sim.agent_count(),
        locations,
        map,
        seed,
        ticks,
        game_time: sim.clock().label(),
        game_minutes: sim.clock().minutes(),
        tick_us: Timing::of(&mut durations),
        wall_ms,
        events,
        stats: sim.stats().clone(),
        memories,
        state_hash: sim.state_hash(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "agents               {}", self.agents)?;
        writeln!(
            f,
            "map                  {} tiles, {} locations",
            self.map, self.locations
        )?;
        writeln!(
            f,
            "ticks                {} (seed {})",
            self.ticks, self.seed
        )?;
        writeln!(f, "game time            {}", self.game_time)?;
        writeln!(
            f,
            "tick time            p50 {} µs, p99 {} µs, max {} µs, mean {} µs",
            self.tick_us.p50, self.tick_us.p99, self.tick_us.max, self.tick_us.mean
        )?;
        writeln!(f, "wall time            {} ms", self.wall_ms)?;
        let s = &self.stats;
        writeln!(
            f,
            "path searches        {} ({} failed, queue max {})",
            s.path_searches, s.path_failures, s.path_queue_max
        )?;
        writeln!(f, "perceptions          {}", s.perceptions)?;
        writeln!(
            f,
            "conversations        {} started ({} groups), {} lines",
            s.conversations_started, s.group_conversations, s.lines
        )?;
        writeln!(
            f,
            "relationship changes {} (+{} shared-activity)",
            s.relationship_changes, s.shared_activity
        )?;
        writeln!(f, "activity changes     {}", s.activity_changes)?;
        writeln!(f, "events               {}", self.events)?;
        let m = &self.memories;
        writeln!(
            f,
            "memories             {} observations, {} conversations, {} plans, {} seeds \
             ({} repeats and {} idle states skipped)",
            m.observations, m.conversations, m.plans, m.seeds, m.repeats, m.idle
        )?;
        writeln!(
            f,
            "reflections          {} insights, {} end-of-day looks back",
            m.reflections, m.metacognitions
        )?;
        write!(f, "state hash           {}", self.state_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut d: Vec<u64> = (1..=100).collect();
        let t = Timing::of(&mut d);
        assert_eq!((t.p50, t.p99, t.max), (51, 99, 100));
        assert_eq!(Timing::of(&mut []), Timing::default());
    }
}
