//! `hearth serve`'s handling of each tick the world hands out, on the
//! world's thread: one named part per consumer, called in a fixed order.
//! No part may block: each hands the tick on through a slot or channel
//! that never waits (a slow consumer loses summaries or merges frames; the
//! world never waits). Touches the tick's output only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_mind::service::MemoryService;
use hearth_net::dispatch::Frames;
use hearth_world::WorldEvent;
use hearth_world::runner::TickOutput;

use crate::persist::SharedFeed;
use crate::think::ModelCalls;

/// Lines of dialogue kept for the language model report.
pub const REPORT_LINES: usize = 60;

/// Lines spoken, by speaker, for the language model report.
pub type SpokenLines = Arc<Mutex<Vec<(u32, String)>>>;

/// The consumers of the world's ticks.
#[derive(Debug)]
pub struct Fanout {
    /// Game seconds after the last tick (`--stop-after` reads it).
    pub clock: Arc<AtomicU64>,
    /// The first [`REPORT_LINES`] lines spoken, for `--llm-report`.
    pub report: Option<SpokenLines>,
    /// The write-behind pipeline (none without a database).
    pub persistence: Option<SharedFeed>,
    /// Agents' models (none without a model): what the world wants of them.
    pub models: Option<ModelCalls>,
    /// The hub: what clients see.
    pub hub: Frames,
    /// The memory service: memories, reflections, embeddings.
    pub memories: MemoryService,
    /// Tick times and event counts for the periodic log line.
    pub timing: tokio::sync::mpsc::Sender<(u64, Duration, usize)>,
}

impl Fanout {
    /// Hands one tick to every part, in order. The models' part runs
    /// before the hub and the memories: it takes the model requests out of
    /// the events.
    pub fn tick(&mut self, mut out: TickOutput) {
        self.clock.store(out.game_seconds, Ordering::Relaxed);
        if let Some(report) = &self.report {
            keep_lines(report, &out.events);
        }
        if let Some(feed) = &self.persistence
            && let Ok(mut feed) = feed.lock()
        {
            feed.tick(&mut out);
        }
        if let Some(models) = &self.models {
            models.tick(&mut out);
        }
        self.hub.push(out.view.take(), &out.events, out.finished);
        let events = std::mem::take(&mut out.events);
        let count = events.len();
        // unbounded and never blocking: the world never waits for memory
        self.memories.tick(out.game_seconds, events);
        // a slow consumer loses summaries, not ticks
        let _ = self.timing.try_send((out.tick, out.duration, count));
    }
}

/// Keeps the tick's spoken lines while the report has fewer than
/// [`REPORT_LINES`].
fn keep_lines(report: &Mutex<Vec<(u32, String)>>, events: &[(u64, WorldEvent)]) {
    let Ok(mut lines) = report.lock() else {
        return;
    };
    if lines.len() >= REPORT_LINES {
        return;
    }
    for (_, e) in events {
        if let WorldEvent::Line { speaker, text, .. } = e {
            lines.push((*speaker, text.clone()));
        }
    }
}
