//! The components an agent is made of, and the small value types they hold.
//! Static identity (name, traits, schedule) stays in the shared definitions
//! ([`Defs`](super::Defs)); components hold only what changes. Pure data.

use bevy_ecs::prelude::*;
use serde::{Deserialize, Serialize};

use hearth_content::{LocationId, Tile};

/// Which agent this is: its index in the content's agent list (sorted by id).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Component, Serialize, Deserialize,
)]
pub struct AgentIdx(pub u32);

/// Where the agent stands, in tiles (fractions while walking).
#[derive(Debug, Clone, Copy, PartialEq, Component, Serialize, Deserialize)]
pub struct Position {
    pub x: f32,
    pub y: f32,
}

impl Position {
    pub fn of(tile: Tile) -> Self {
        Self {
            x: f32::from(tile.x),
            y: f32::from(tile.y),
        }
    }

    pub fn tile(&self) -> Tile {
        Tile::new(
            self.x.round().max(0.0) as u16,
            self.y.round().max(0.0) as u16,
        )
    }

    pub fn distance(&self, other: &Position) -> f32 {
        ((self.x - other.x).powi(2) + (self.y - other.y).powi(2)).sqrt()
    }
}

/// Eight compass directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Component, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Facing {
    N,
    Ne,
    E,
    Se,
    #[default]
    S,
    Sw,
    W,
    Nw,
}

impl Facing {
    /// The direction of a step (dx, dy); `None` for no movement.
    pub fn of_step(dx: f32, dy: f32) -> Option<Self> {
        if dx.abs() < 1e-4 && dy.abs() < 1e-4 {
            return None;
        }
        let angle = dy.atan2(dx); // y grows downwards (south)
        let octant = ((angle / std::f32::consts::FRAC_PI_4).round() as i32).rem_euclid(8);
        Some(match octant {
            0 => Facing::E,
            1 => Facing::Se,
            2 => Facing::S,
            3 => Facing::Sw,
            4 => Facing::W,
            5 => Facing::Nw,
            6 => Facing::N,
            _ => Facing::Ne,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Facing::N => "n",
            Facing::Ne => "ne",
            Facing::E => "e",
            Facing::Se => "se",
            Facing::S => "s",
            Facing::Sw => "sw",
            Facing::W => "w",
            Facing::Nw => "nw",
        }
    }
}

/// What the agent's schedule says it should be doing now.
#[derive(Debug, Clone, PartialEq, Component, Serialize, Deserialize)]
pub struct Activity {
    /// Index into the agent's schedule; `None` when no entry covers the time
    /// (free time) or a need overrides it.
    pub block: Option<u16>,
    /// Why the agent does something else than its schedule, if it does.
    pub override_reason: Option<Override>,
    pub location: LocationId,
    /// Game minute the activity began.
    pub since: u64,
    /// Game minute the activity is due to end.
    pub until: u64,
    /// The activity is sleep: the agent rests once it reaches its spot.
    pub sleep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Override {
    /// Exhausted: goes home to rest.
    Exhausted,
    /// No schedule entry covers the time.
    FreeTime,
}

/// A step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Walk to a tile of a location.
    GoTo { location: LocationId, tile: Tile },
    /// Do the activity there until the game minute `until`.
    Perform { until: u64 },
    /// One step of the activity, as the agent's model broke it down (or a
    /// reaction to something perceived), until the game minute `until`.
    Do { until: u64, action: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    Active,
    Done,
    Abandoned,
}

/// What the agent actually follows, tick by tick: made by the mind from the
/// current activity.
#[derive(Debug, Clone, PartialEq, Component, Serialize, Deserialize)]
pub struct Plan {
    /// Incremented for every new plan: the id the writer persists it under.
    pub id: u64,
    pub goal: String,
    pub steps: Vec<Step>,
    pub current: usize,
    pub status: PlanStatus,
    pub priority: u8,
    /// Game minute by which the plan is over.
    pub deadline: u64,
}

impl Plan {
    pub fn step(&self) -> Option<&Step> {
        self.steps.get(self.current)
    }
}

/// Walking state.
#[derive(Debug, Clone, Default, PartialEq, Component, Serialize, Deserialize)]
pub struct Movement {
    /// Where the agent is going, if anywhere.
    pub goal: Option<Tile>,
    /// Tiles still to walk, nearest last (popped from the end).
    pub path: Vec<Tile>,
    /// A path search is queued for `goal`.
    pub waiting: bool,
    /// The goal could not be reached; set until the goal changes.
    pub unreachable: bool,
}

impl Movement {
    pub fn arrived(&self, at: Tile) -> bool {
        self.goal.is_none_or(|g| g == at) && self.path.is_empty() && !self.waiting
    }
}

/// Bodily and emotional state. Every value is clamped to its range.
#[derive(Debug, Clone, Copy, PartialEq, Component, Serialize, Deserialize)]
pub struct Needs {
    /// 0 (exhausted) .. 1 (rested).
    pub energy: f32,
    /// Valence of the mood, -1 .. 1.
    pub mood: f32,
    /// Arousal of the current emotion, 0 .. 1.
    pub arousal: f32,
    /// 0 .. 1: rises with conversations, falls with quiet.
    pub cognitive_load: f32,
    pub sleeping: bool,
    /// The mood this agent's temperament returns to (from its personality).
    pub baseline: f32,
}

impl Needs {
    /// Needs at the start, with the mood baseline of this personality.
    pub fn for_personality(p: &hearth_content::agent::BigFive) -> Self {
        let baseline = 0.3 * (1.0 - p.neuroticism) - 0.05 + 0.1 * (p.extraversion - 0.5);
        Self {
            mood: baseline,
            baseline,
            ..Self::default()
        }
    }
}

impl Default for Needs {
    fn default() -> Self {
        Self {
            energy: 0.9,
            mood: 0.1,
            arousal: 0.2,
            cognitive_load: 0.0,
            sleeping: false,
            baseline: 0.1,
        }
    }
}

/// What the agent perceived lately, so repeats are ignored.
#[derive(Debug, Clone, Default, PartialEq, Component, Serialize, Deserialize)]
pub struct Perception {
    /// (other agent, what it was doing, game minute) of recent perceptions.
    pub recent: Vec<(u32, u32, u64)>,
    /// What was new on the agent's last look: (other agent, what it was
    /// doing, distance), nearest first.
    pub fresh: Vec<(u32, u32, f32)>,
    /// The nearest free agent within talking reach on the last look.
    pub reach: Option<(u32, f32)>,
}

/// Conversation state.
#[derive(Debug, Clone, Default, PartialEq, Component, Serialize, Deserialize)]
pub struct Talk {
    /// The conversation the agent is in.
    pub conversation: Option<u64>,
    /// Game minute before which the agent will not start a new conversation
    /// with each other agent.
    pub cooldowns: Vec<(u32, u64)>,
    /// Conversations joined so far.
    pub count: u32,
}

impl Talk {
    pub fn cooling(&self, other: u32, now: u64) -> bool {
        self.cooldowns
            .iter()
            .any(|(o, until)| *o == other && *until > now)
    }
}

/// How this agent feels about one other agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relationship {
    pub target: u32,
    pub kind: String,
    /// -100 .. 100
    pub affection: f32,
    /// 0 .. 100
    pub trust: f32,
    pub interactions: u32,
    /// Game minute of the last interaction.
    pub last_interaction: Option<u64>,
}

/// An agent's relationships, sorted by target.
#[derive(Debug, Clone, Default, PartialEq, Component, Serialize, Deserialize)]
pub struct Relationships(pub Vec<Relationship>);

impl Relationships {
    pub fn get(&self, target: u32) -> Option<&Relationship> {
        self.0
            .binary_search_by_key(&target, |r| r.target)
            .ok()
            .map(|i| &self.0[i])
    }

    /// The relationship with `target`, created as strangers if new.
    pub fn entry(&mut self, target: u32) -> &mut Relationship {
        let i = match self.0.binary_search_by_key(&target, |r| r.target) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(
                    i,
                    Relationship {
                        target,
                        kind: "acquaintance".into(),
                        affection: 0.0,
                        trust: 30.0,
                        interactions: 0,
                        last_interaction: None,
                    },
                );
                i
            }
        };
        &mut self.0[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facing_follows_steps() {
        assert_eq!(Facing::of_step(1.0, 0.0), Some(Facing::E));
        assert_eq!(Facing::of_step(0.0, 1.0), Some(Facing::S));
        assert_eq!(Facing::of_step(-1.0, -1.0), Some(Facing::Nw));
        assert_eq!(Facing::of_step(0.0, 0.0), None);
    }

    #[test]
    fn relationships_stay_sorted() {
        let mut r = Relationships::default();
        r.entry(5).affection = 10.0;
        r.entry(2);
        r.entry(9);
        assert_eq!(
            r.0.iter().map(|x| x.target).collect::<Vec<_>>(),
            vec![2, 5, 9]
        );
        assert_eq!(r.get(5).map(|x| x.affection), Some(10.0));
        assert!(r.get(3).is_none());
    }
}
