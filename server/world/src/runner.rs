//! The world on its own OS thread at a fixed tick rate. Commands come in over
//! a channel and are applied at the start of a tick; after each tick the
//! sink is handed that tick's events and timing. The sink must not block
//! (forward with `try_send`, count what is dropped): the tick never waits on
//! anyone. A tick that runs late is followed at once by the next, without
//! trying to catch up more than a second of backlog. Touches only the `Sim`
//! it owns and the thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Command, Sim, WorldEvent};

/// What one tick produced.
#[derive(Debug, Clone)]
pub struct TickOutput {
    pub tick: u64,
    /// Wall time spent in the tick.
    pub duration: Duration,
    /// When the tick finished (for delivery-latency measurements downstream).
    pub finished: Instant,
    /// Game seconds since the world's epoch after the tick.
    pub game_seconds: u64,
    pub events: Vec<(u64, WorldEvent)>,
    /// The snapshot for the write-behind writer, on ticks that took one.
    pub snapshot: Option<super::persist::WorldSnapshot>,
    /// What clients see that changed, when the view is published.
    pub view: Option<super::view::ViewFrame>,
}

/// A running world. Dropping it stops the thread and waits for it.
#[derive(Debug)]
pub struct WorldHandle {
    commands: mpsc::Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Sim>>,
}

impl WorldHandle {
    /// Sends a command; it is applied at the start of the next tick.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// Another sender of commands to the world.
    pub fn sender(&self) -> mpsc::Sender<Command> {
        self.commands.clone()
    }

    /// Stops after the current tick and returns the world, for a last checkpoint.
    pub fn stop(mut self) -> Option<Sim> {
        self.stop.store(true, Ordering::Release);
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for WorldHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts `sim` ticking at its configured rate on a thread named "world".
pub fn spawn(
    mut sim: Sim,
    mut sink: impl FnMut(TickOutput) + Send + 'static,
) -> std::io::Result<WorldHandle> {
    let (tx, rx) = mpsc::channel::<Command>();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop);
    let period = Duration::from_secs_f64(1.0 / f64::from(sim.config().tick_rate.max(1)));
    let thread = std::thread::Builder::new()
        .name("world".into())
        .spawn(move || {
            info!(
                agents = sim.agent_count(),
                hz = sim.config().tick_rate,
                "world thread running"
            );
            let mut next = Instant::now();
            while !stop_flag.load(Ordering::Acquire) {
                while let Ok(command) = rx.try_recv() {
                    sim.send(command);
                }
                let started = Instant::now();
                sim.step();
                let finished = Instant::now();
                sink(TickOutput {
                    tick: sim.clock().tick,
                    duration: finished - started,
                    finished,
                    game_seconds: sim.clock().seconds,
                    events: sim.drain_events(),
                    snapshot: sim.take_snapshot(),
                    view: sim.take_view(),
                });
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else if now - next > Duration::from_secs(1) {
                    warn!(
                        behind_ms = (now - next).as_millis() as u64,
                        "world is running behind; skipping the backlog"
                    );
                    next = now;
                }
            }
            info!(tick = sim.clock().tick, "world thread stopped");
            sim
        })?;
    Ok(WorldHandle {
        commands: tx,
        stop,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;
    use hearth_content::synthetic;

    #[test]
    fn ticks_at_its_rate_applies_commands_and_stops() {
        let sim = Sim::new(
            synthetic::world(20, 1),
            SimConfig {
                tick_rate: 100,
                ..SimConfig::default()
            },
        );
        let (tx, rx) = mpsc::channel();
        let handle = spawn(sim, move |out| {
            let _ = tx.send(out.tick);
        })
        .expect("thread");
        std::thread::sleep(Duration::from_millis(200));
        handle.send(Command::Pause);
        std::thread::sleep(Duration::from_millis(50));
        let sim = handle.stop().expect("joined");
        let ticks: Vec<u64> = rx.try_iter().collect();
        assert!(
            ticks.len() >= 10,
            "ticked {} times in 250 ms at 100 Hz",
            ticks.len()
        );
        // paused: the clock stopped although the loop went on
        assert!(sim.clock().tick < ticks.len() as u64 + 1);
        assert!(*ticks.last().expect("ticks") <= sim.clock().tick);
    }
}
