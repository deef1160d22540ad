//! What clients see of the world, published each tick for the hub: the
//! agents whose position, facing, activity or mood changed during the tick
//! (bevy change detection), as small plain values the hub mirrors and cuts
//! into areas of interest. The first frame, and any after [`View::resync`],
//! holds every agent. No I/O and no strings: labels are resolved by the hub
//! from the shared definitions. Touches the agents' components (read-only)
//! and its own [`View`] resource.

use bevy_ecs::prelude::*;

use super::GameClock;
use super::components::{Activity, AgentIdx, Facing, Needs, Override, Position};
use super::players::Characters;
use super::schedule::ActivityLabel;
use hearth_content::{AgentDef, LocationId};

/// What a client sees of an agent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentView {
    pub idx: u32,
    pub x: f32,
    pub y: f32,
    pub facing: Facing,
    /// The schedule block the agent is in (`u16::MAX` for none) and why it
    /// is not in one: 0 none, 1 exhausted, 2 free time.
    pub block: u16,
    pub reason: u8,
    pub location: LocationId,
    /// -1 (miserable) ..= 1 (elated).
    pub mood: f32,
}

impl AgentView {
    /// The activity's label, as the agent's definition names it.
    pub fn activity<'a>(&self, def: &'a AgentDef) -> &'a str {
        let label = match (self.block, self.reason) {
            (b, _) if b != u16::MAX => ActivityLabel::of_block(def, Some(b)),
            (_, 1) => ActivityLabel::Resting,
            _ => ActivityLabel::FreeTime,
        };
        label.as_str()
    }
}

/// What a client sees of a player's character.
#[derive(Debug, Clone, PartialEq)]
pub struct CharacterView {
    /// The character's slot (stable while the world runs).
    pub slot: u32,
    pub name: String,
    pub x: f32,
    pub y: f32,
    pub facing: Facing,
    pub location: Option<LocationId>,
}

/// One tick's changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewFrame {
    pub tick: u64,
    pub game_seconds: u64,
    pub agents: Vec<AgentView>,
    /// Characters that joined or moved.
    pub characters: Vec<CharacterView>,
    /// Slots of characters that left.
    pub gone: Vec<u32>,
    /// Agents that left the world (their content file was removed).
    pub agents_gone: Vec<u32>,
    /// `agents` and `characters` hold everyone.
    pub full: bool,
}

impl ViewFrame {
    /// Folds a later frame into this one: the newest view of each agent and
    /// character wins, and a character that left and came back is present.
    pub fn merge(&mut self, later: ViewFrame) {
        self.tick = later.tick;
        self.game_seconds = later.game_seconds;
        self.full |= later.full;
        let mut at: std::collections::HashMap<u32, usize> = self
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.idx, i))
            .collect();
        for idx in later.agents_gone {
            if let Some(i) = at.remove(&idx) {
                self.agents.swap_remove(i);
                if let Some(moved) = self.agents.get(i) {
                    at.insert(moved.idx, i);
                }
            }
            if !self.agents_gone.contains(&idx) {
                self.agents_gone.push(idx);
            }
        }
        for a in later.agents {
            self.agents_gone.retain(|&g| g != a.idx);
            match at.get(&a.idx) {
                Some(&i) => self.agents[i] = a,
                None => {
                    at.insert(a.idx, self.agents.len());
                    self.agents.push(a);
                }
            }
        }
        for slot in later.gone {
            self.characters.retain(|c| c.slot != slot);
            if !self.gone.contains(&slot) {
                self.gone.push(slot);
            }
        }
        for c in later.characters {
            self.gone.retain(|&g| g != c.slot);
            match self.characters.iter_mut().find(|x| x.slot == c.slot) {
                Some(x) => *x = c,
                None => self.characters.push(c),
            }
        }
    }
}

/// Whether the view is published, and the frame waiting to be taken.
#[derive(Debug, Default, Resource)]
pub struct View {
    pub on: bool,
    /// The next frame holds every agent.
    pub resync: bool,
    /// Agents that left since the last frame.
    pub agents_gone: Vec<u32>,
    pub out: Option<ViewFrame>,
}

/// Run condition: the view is published.
pub fn viewing(view: Res<View>) -> bool {
    view.on
}

type Seen<'a> = (
    &'a AgentIdx,
    Ref<'a, Position>,
    Ref<'a, Facing>,
    Ref<'a, Activity>,
    Ref<'a, Needs>,
);

type ViewChanged = Or<(
    Changed<Position>,
    Changed<Facing>,
    Changed<Activity>,
    Changed<Needs>,
)>;

fn agent_view(item: &Seen<'_>) -> AgentView {
    let (idx, position, facing, activity, needs) = item;
    AgentView {
        idx: idx.0,
        x: position.x,
        y: position.y,
        facing: **facing,
        block: activity.block.unwrap_or(u16::MAX),
        reason: match activity.override_reason {
            None => 0,
            Some(Override::Exhausted) => 1,
            Some(Override::FreeTime) => 2,
        },
        location: activity.location,
        mood: needs.mood,
    }
}

/// Publishes this tick's changes into [`View::out`] (replacing a frame
/// nobody took would lose changes, so an untaken frame is merged).
pub fn publish(
    mut view: ResMut<View>,
    clock: Res<GameClock>,
    map: Res<super::MapRes>,
    mut characters: ResMut<Characters>,
    changed: Query<Seen, ViewChanged>,
    all: Query<Seen>,
) {
    let full = view.resync;
    let agents: Vec<AgentView> = if full {
        all.iter().map(|s| agent_view(&s)).collect()
    } else {
        changed.iter().map(|s| agent_view(&s)).collect()
    };
    let slots: Vec<u32> = if full {
        characters.present().map(|(slot, _)| slot).collect()
    } else {
        characters.dirty.iter().copied().collect()
    };
    let character_views = slots
        .into_iter()
        .filter_map(|slot| {
            characters.slot(slot).map(|c| CharacterView {
                slot,
                name: c.name.clone(),
                x: c.x,
                y: c.y,
                facing: c.facing,
                location: map.0.location_at(c.tile()),
            })
        })
        .collect();
    let gone = std::mem::take(&mut characters.gone).into_iter().collect();
    characters.dirty.clear();
    let frame = ViewFrame {
        tick: clock.tick,
        game_seconds: clock.seconds,
        agents,
        characters: character_views,
        gone,
        agents_gone: std::mem::take(&mut view.agents_gone),
        full,
    };
    view.resync = false;
    match view.out.as_mut() {
        Some(waiting) => waiting.merge(frame),
        None => view.out = Some(frame),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Sim, SimConfig};
    use hearth_content::synthetic;

    #[test]
    fn the_first_frame_has_everyone_then_only_what_changed() {
        let mut sim = Sim::new(synthetic::world(200, 3), SimConfig::default());
        sim.publish_view();
        sim.step();
        let first = sim.take_view().expect("a frame");
        assert!(first.full);
        assert_eq!(first.agents.len(), 200);
        let mut changed_total = 0;
        for _ in 0..50 {
            sim.step();
            let f = sim.take_view().expect("a frame each tick");
            assert!(!f.full);
            assert!(f.agents.len() < 200, "only the changed: {}", f.agents.len());
            for a in &f.agents {
                let p = sim
                    .get::<crate::components::Position>(a.idx)
                    .expect("agent");
                if sim.clock().tick == f.tick {
                    assert_eq!((a.x, a.y), (p.x, p.y));
                }
            }
            changed_total += f.agents.len();
        }
        assert!(changed_total > 0, "agents move and their needs change");
        // a frame nobody took is merged into the next, not lost
        sim.step();
        sim.step();
        let merged = sim.take_view().expect("merged");
        assert_eq!(merged.tick, sim.clock().tick);
        let mut idx: Vec<u32> = merged.agents.iter().map(|a| a.idx).collect();
        idx.sort_unstable();
        idx.dedup();
        assert_eq!(idx.len(), merged.agents.len(), "one view per agent");
        // a resync holds everyone again
        sim.resync_view();
        sim.step();
        assert_eq!(sim.take_view().expect("frame").agents.len(), 200);
    }
}
