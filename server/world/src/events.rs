//! What goes in and out of the world each tick: commands read at the start of
//! a tick ([`Inbox`]) and events emitted during it ([`Outbox`]), drained by
//! whoever runs the world (the hub, the writer, a report). Pure data.

use bevy_ecs::prelude::*;
use serde::Serialize;

use hearth_content::LocationId;

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
    /// A conversation's next line is asked of the speaker's model (see
    /// [`super::conversation::ModelLines`]); the answer comes back as
    /// [`Command::Line`].
    LineWanted(Box<LineWanted>),
    /// A plan decision is asked of an agent's model (see
    /// [`super::plan::ModelPlans`]); the answer comes back as
    /// [`Command::DayPlan`] or [`Command::Steps`].
    PlanWanted(Box<PlanWanted>),
    /// An agent's model planned its day.
    DayPlanned {
        agent: u32,
        day: u64,
        wake: String,
        items: Vec<String>,
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
    /// A player's character said something; `agents` heard it (the one it
    /// was said to, or everyone within talking distance).
    PlayerSaid {
        character: String,
        text: String,
        agents: Vec<u32>,
        /// The character it was said to, if it was said to one.
        to_character: Option<String>,
        /// The player conversation it belongs to, if any.
        conversation: Option<u64>,
    },
    /// An agent answered a character.
    AgentAnswered {
        agent: u32,
        character: String,
        /// What the character had said.
        heard: String,
        text: String,
        conversation: Option<u64>,
    },
    /// A character began or ended a conversation with an agent.
    PlayerTalkStarted {
        conversation: u64,
        character: String,
        agent: u32,
        location: Option<LocationId>,
    },
    PlayerTalkEnded {
        conversation: u64,
        character: String,
        agent: u32,
    },
    /// How an agent feels about a character changed.
    CharacterTieChanged {
        agent: u32,
        character: String,
        affection: f32,
        trust: f32,
    },
    /// A character used a map object.
    Interacted {
        character: String,
        object: String,
        location: Option<LocationId>,
    },
    /// New content took effect at this tick (see [`super::reload`]): from
    /// here on, agent indices name the definitions it holds.
    ContentReloaded(std::sync::Arc<super::reload::Reloaded>),
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

/// A plan decision asked of an agent's model.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "ask", rename_all = "snake_case")]
pub enum PlanWanted {
    /// The day's broad plan, when the agent is first up on a game day.
    Day { agent: u32, day: u64 },
    /// Steps of plan `plan` (activity `activity` at `location`) from game
    /// minute `from` to `to`.
    Steps {
        agent: u32,
        plan: u64,
        activity: String,
        location: String,
        objects: Vec<String>,
        from: u64,
        to: u64,
        /// The day's plan so far, for context.
        day_plan: Vec<String>,
    },
}

/// What a model needs to say a conversation's next line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineWanted {
    pub conversation: u64,
    pub turn: u32,
    pub max_turns: u32,
    pub speaker: u32,
    pub listeners: Vec<u32>,
    /// The lines so far, oldest first: (speaker, text).
    pub transcript: Vec<(u32, String)>,
    pub location: Option<String>,
    /// What the speaker was doing before it started talking.
    pub activity: String,
    /// The speaker's (affection, trust) toward the first listener.
    pub relationship: Option<(f32, f32)>,
}

/// How the world answers a command that asks something: a function called
/// once, on the world's thread, during the tick that applies the command.
/// It must not block; it typically hands the answer to a channel of the
/// asker's choosing (so the world needs no async runtime of its own).
pub struct Reply<T>(Box<dyn FnOnce(T) + Send + Sync>);

impl<T> Reply<T> {
    pub fn new(answer: impl FnOnce(T) + Send + Sync + 'static) -> Self {
        Self(Box::new(answer))
    }

    /// Gives the answer to the asker.
    pub fn send(self, value: T) {
        (self.0)(value);
    }
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// A command from outside the world, applied at the start of a tick.
#[derive(Debug)]
pub enum Command {
    /// Stop advancing game time and agents (the world still accepts commands).
    Pause,
    Resume,
    /// Slow what makes new memories and messages (perception and new
    /// conversations stop; everything else goes on) while the writer is
    /// backlogged, or end that.
    Throttle(bool),
    /// Game minutes per real second from now on.
    SetTimeScale(u32),
    /// Something a player's character does (see [`super::players`]).
    Player(super::players::PlayerCommand),
    /// An agent's answer to a character, made by its mind off the world's
    /// thread.
    Answer {
        agent: u32,
        character: String,
        heard: String,
        text: String,
    },
    /// A conversation's next line from the speaker's model; `text: None`
    /// when the model failed and the rule-based mind should speak.
    Line {
        conversation: u64,
        turn: u32,
        speaker: u32,
        text: Option<String>,
        /// The model thinks the conversation has run its course.
        end: bool,
    },
    /// An agent's day plan from its model (or the rule-based one).
    DayPlan {
        agent: u32,
        day: u64,
        wake: String,
        items: Vec<String>,
    },
    /// Steps of an agent's plan from its model: (minutes, action) each,
    /// from game minute `from`; empty when the model failed (the agent
    /// simply goes on with its activity).
    Steps {
        agent: u32,
        plan: u64,
        from: u64,
        steps: Vec<(u32, String)>,
    },
    /// An agent's model reacts to something it perceived: it does `action`
    /// for `minutes`, then goes on with its plan.
    React {
        agent: u32,
        action: String,
        minutes: u32,
    },
    /// What agent `agent` is doing, planning and feeling about whom, sent
    /// back on `reply` during the next tick.
    Inspect {
        agent: u32,
        reply: Reply<super::players::Inspection>,
    },
    /// Swap in changed content before the next tick (see [`super::reload`]).
    Reload(Box<super::reload::Reload>),
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

/// Applies inbound commands; what concerns characters and agents' answers
/// is handed to [`super::players::apply`], which runs next.
pub fn apply_inbox(
    mut inbox: ResMut<Inbox>,
    (mut paused, mut throttled): (ResMut<Paused>, ResMut<Throttled>),
    mut clock: ResMut<super::GameClock>,
    mut players: ResMut<super::players::PlayerInbox>,
    mut lines: ResMut<super::conversation::ModelLines>,
    mut plans: ResMut<super::plan::ModelPlans>,
    mut reload: ResMut<super::reload::PendingReload>,
) {
    for command in inbox.commands.drain(..) {
        match command {
            Command::Pause => paused.0 = true,
            Command::Resume => paused.0 = false,
            Command::Throttle(on) => throttled.0 = on,
            Command::SetTimeScale(scale) => clock.set_time_scale(scale),
            Command::Line {
                conversation,
                turn,
                speaker,
                text,
                end,
            } => lines.answer(conversation, turn, speaker, text, end),
            Command::Reload(r) => reload.0 = Some(*r),
            c @ (Command::DayPlan { .. } | Command::Steps { .. } | Command::React { .. }) => {
                plans.inbox.push(c);
            }
            other => players.commands.push(other),
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
