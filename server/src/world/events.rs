//! What goes in and out of the world each tick: commands read at the start of
//! a tick ([`Inbox`]) and events emitted during it ([`Outbox`]), drained by
//! whoever runs the world (the hub, the writer, a report). Pure data.

use bevy_ecs::prelude::*;
use serde::Serialize;

use crate::content::LocationId;

/// Something that happened in the world, for clients, memories and logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorldEvent {
    ActivityChanged {
        agent: u32,
        activity: String,
        location: LocationId,
    },
    PlanChanged {
        agent: u32,
        plan: u64,
        goal: String,
    },
    Arrived {
        agent: u32,
        location: Option<LocationId>,
    },
    Perceived {
        agent: u32,
        other: u32,
        /// What the other agent was doing.
        activity: String,
        location: Option<LocationId>,
        distance: f32,
    },
    ConversationStarted {
        conversation: u64,
        participants: Vec<u32>,
        location: Option<LocationId>,
    },
    Line {
        conversation: u64,
        /// Lines said before this one in the conversation (0 for the first).
        turn: u32,
        speaker: u32,
        text: String,
    },
    ConversationEnded {
        conversation: u64,
        participants: Vec<u32>,
        turns: u32,
    },
    RelationshipChanged {
        agent: u32,
        other: u32,
        affection: f32,
        trust: f32,
    },
    Woke {
        agent: u32,
    },
    FellAsleep {
        agent: u32,
    },
}

/// Events of the current tick, in the order they happened.
#[derive(Debug, Default, Resource)]
pub struct Outbox {
    pub events: Vec<(u64, WorldEvent)>,
}

impl Outbox {
    pub fn push(&mut self, tick: u64, event: WorldEvent) {
        self.events.push((tick, event));
    }

    /// Takes every event so far.
    pub fn drain(&mut self) -> Vec<(u64, WorldEvent)> {
        std::mem::take(&mut self.events)
    }
}

/// A command from outside the world, applied at the start of a tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Stop advancing game time and agents (the world still accepts commands).
    Pause,
    Resume,
    /// Slow what makes new memories and messages (perception and new
    /// conversations stop; everything else goes on) while the writer is
    /// backlogged, or end that.
    Throttle(bool),
}

#[derive(Debug, Default, Resource)]
pub struct Inbox {
    pub commands: Vec<Command>,
}

/// Whether the world is paused.
#[derive(Debug, Default, Resource)]
pub struct Paused(pub bool);

/// Whether new memories and messages are being held back.
#[derive(Debug, Default, Resource)]
pub struct Throttled(pub bool);

/// Applies inbound commands.
pub fn apply_inbox(
    mut inbox: ResMut<Inbox>,
    mut paused: ResMut<Paused>,
    mut throttled: ResMut<Throttled>,
) {
    for command in inbox.commands.drain(..) {
        match command {
            Command::Pause => paused.0 = true,
            Command::Resume => paused.0 = false,
            Command::Throttle(on) => throttled.0 = on,
        }
    }
}

/// Run condition: new memories and messages are not being held back.
pub fn unthrottled(throttled: Res<Throttled>) -> bool {
    !throttled.0
}

/// Run condition: the world is not paused.
pub fn running(paused: Res<Paused>) -> bool {
    !paused.0
}
