//! Player characters in the world: they join and leave with their players'
//! connections, walk where they are sent (A* over the map, at walking
//! speed), speak to agents near them, hold conversations with one agent at a
//! time (the agent stands still while it lasts), use map objects, and are
//! known by agents through ties (affection and trust) that answers change.
//! Commands arrive through the [`PlayerInbox`] (routed there by the inbox
//! system); everything that happens leaves as [`WorldEvent`]s. An agent's
//! answer is made off the world's thread (it needs the agent's retrieved
//! memories) and comes back as [`Command::Answer`]. Touches the characters,
//! ties, the agents' `Talk`, the conversation counter and the outbox; reads
//! the agents' positions, activities, plans and relationships.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bevy_ecs::prelude::*;

use super::clock::GameClock;
use super::components::{Activity, AgentIdx, Facing, Plan, Position, Relationships, Step, Talk};
use super::conversation::Conversations;
use super::events::{Command, Outbox, WorldEvent};
use super::path::find_path;
use super::schedule::activity_label;
use super::{AgentIndex, Defs, MapRes, SimConfig};
use hearth_content::{LocationId, Tile, WorldMap};

/// A player conversation with no line for this many game minutes ends.
pub const TALK_IDLE_MINUTES: u64 = 10;

/// Something a player's character does.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayerCommand {
    /// The character enters the world (again: where it left).
    Join {
        name: String,
    },
    Leave {
        name: String,
    },
    MoveTo {
        name: String,
        to: Tile,
    },
    Say {
        name: String,
        text: String,
        to: Option<Listener>,
    },
    StartTalk {
        name: String,
        agent: u32,
    },
    EndTalk {
        name: String,
    },
    Interact {
        name: String,
        object: String,
    },
}

/// Whom a line is said to.
#[derive(Debug, Clone, PartialEq)]
pub enum Listener {
    Agent(u32),
    Character(String),
}

/// A player's character.
#[derive(Debug, Clone, PartialEq)]
pub struct Character {
    pub name: String,
    pub x: f32,
    pub y: f32,
    pub facing: Facing,
    /// In the world (not left).
    pub present: bool,
    /// Tiles still to walk, the next one last.
    path: Vec<Tile>,
    /// The conversation it holds, with which agent, and the game minute of
    /// its last line.
    pub talk: Option<(u64, u32, u64)>,
}

impl Character {
    pub fn tile(&self) -> Tile {
        Position {
            x: self.x,
            y: self.y,
        }
        .tile()
    }

    fn distance_to(&self, p: &Position) -> f32 {
        ((self.x - p.x).powi(2) + (self.y - p.y).powi(2)).sqrt()
    }
}

/// The characters, each in a slot of its own for good (a character that
/// comes back takes its old slot), and which slots changed since the view
/// last looked.
#[derive(Debug, Default, Resource)]
pub struct Characters {
    slots: Vec<Character>,
    by_name: HashMap<String, u32>,
    pub(crate) dirty: BTreeSet<u32>,
    pub(crate) gone: BTreeSet<u32>,
}

impl Characters {
    pub fn get(&self, name: &str) -> Option<(u32, &Character)> {
        let slot = *self.by_name.get(name)?;
        self.slots
            .get(slot as usize)
            .filter(|c| c.present)
            .map(|c| (slot, c))
    }

    pub fn slot(&self, slot: u32) -> Option<&Character> {
        self.slots.get(slot as usize).filter(|c| c.present)
    }

    /// The characters in the world, with their slots.
    pub fn present(&self) -> impl Iterator<Item = (u32, &Character)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, c)| c.present)
            .map(|(i, c)| (i as u32, c))
    }

    fn get_mut(&mut self, name: &str) -> Option<(u32, &mut Character)> {
        let slot = *self.by_name.get(name)?;
        self.slots
            .get_mut(slot as usize)
            .filter(|c| c.present)
            .map(|c| (slot, c))
    }

    fn touch(&mut self, slot: u32) {
        self.dirty.insert(slot);
        self.gone.remove(&slot);
    }
}

/// Commands for characters and answers, in arrival order, for this tick.
#[derive(Debug, Default, Resource)]
pub struct PlayerInbox {
    pub commands: Vec<Command>,
}

/// How an agent feels about a character.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tie {
    /// -100 ..= 100
    pub affection: f32,
    /// 0 ..= 100
    pub trust: f32,
    pub interactions: u32,
    /// Game minute of the last exchange.
    pub last_interaction: u64,
}

/// Every agent's ties with characters, by (agent, character).
#[derive(Debug, Default, Resource)]
pub struct Ties(pub BTreeMap<(u32, String), Tie>);

/// Who an inspected relationship is with.
#[derive(Debug, Clone, PartialEq)]
pub enum Who {
    Agent(u32),
    Character(String),
}

/// One of an agent's relationships, for an inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectedTie {
    pub with: Who,
    pub kind: String,
    pub affection: f32,
    pub trust: f32,
}

/// What an agent is doing, its plan and its relationships, now.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    pub activity: String,
    /// Goal, steps in words, and the current step.
    pub plan: Option<(String, Vec<String>, usize)>,
    pub relationships: Vec<InspectedTie>,
}

/// Where a character enters the world for the first time: the middle
/// walkable tile of the first location that has one.
pub fn spawn_tile(map: &WorldMap) -> Tile {
    map.locations
        .iter()
        .find(|l| !l.walkable.is_empty())
        .map_or_else(
            || Tile::new(map.width / 2, map.height / 2),
            |l| l.walkable[l.walkable.len() / 2],
        )
}

fn step_label(map: &WorldMap, step: &Step) -> String {
    match step {
        Step::GoTo { location, .. } => format!("go to {}", map.location(*location).name),
        Step::Perform { until } => {
            let m = until % u64::from(hearth_content::DAY_MINUTES);
            format!("perform until {:02}:{:02}", m / 60, m % 60)
        }
        Step::Do { until, action } => {
            let m = until % u64::from(hearth_content::DAY_MINUTES);
            format!("{action} until {:02}:{:02}", m / 60, m % 60)
        }
    }
}

type AgentItem<'a> = (
    &'a AgentIdx,
    &'a Position,
    &'a Activity,
    &'a Plan,
    &'a mut Talk,
    &'a Relationships,
);

/// Applies this tick's character commands, answers and inspections, and
/// ends player conversations that went quiet.
#[expect(
    clippy::too_many_arguments,
    reason = "a bevy system takes what it touches as parameters"
)]
pub fn apply(
    mut inbox: ResMut<PlayerInbox>,
    mut characters: ResMut<Characters>,
    mut ties: ResMut<Ties>,
    mut conversations: ResMut<Conversations>,
    mut outbox: ResMut<Outbox>,
    clock: Res<GameClock>,
    config: Res<SimConfig>,
    map: Res<MapRes>,
    defs: Res<Defs>,
    index: Res<AgentIndex>,
    mut agents: Query<AgentItem>,
) {
    let map = &map.0;
    let tick = clock.tick;
    let now = clock.minutes();
    let entity = |idx: u32| index.0.get(idx as usize).copied();
    for command in std::mem::take(&mut inbox.commands) {
        match command {
            Command::Player(PlayerCommand::Join { name }) => {
                if let Some(&slot) = characters.by_name.get(&name) {
                    characters.slots[slot as usize].present = true;
                    characters.touch(slot);
                    continue;
                }
                let tile = spawn_tile(map);
                let slot = characters.slots.len() as u32;
                characters.slots.push(Character {
                    name: name.clone(),
                    x: f32::from(tile.x),
                    y: f32::from(tile.y),
                    facing: Facing::S,
                    present: true,
                    path: Vec::new(),
                    talk: None,
                });
                characters.by_name.insert(name, slot);
                characters.touch(slot);
            }
            Command::Player(PlayerCommand::Leave { name }) => {
                let Some((slot, c)) = characters.get_mut(&name) else {
                    continue;
                };
                c.present = false;
                c.path.clear();
                let talk = c.talk.take();
                characters.dirty.remove(&slot);
                characters.gone.insert(slot);
                if let Some((id, agent, _)) = talk {
                    end_talk(
                        &mut agents,
                        entity(agent),
                        id,
                        &name,
                        agent,
                        tick,
                        &mut outbox,
                    );
                }
            }
            Command::Player(PlayerCommand::MoveTo { name, to }) => {
                let Some((_, c)) = characters.get_mut(&name) else {
                    continue;
                };
                if let Some(mut path) = find_path(map, c.tile(), to) {
                    path.reverse();
                    c.path = path;
                }
            }
            Command::Player(PlayerCommand::Say { name, text, to }) => {
                let Some((slot, c)) = characters.get(&name) else {
                    continue;
                };
                let conversation = c.talk.map(|t| t.0);
                let partner = c.talk.map(|t| t.1);
                let mut heard = Vec::new();
                let mut to_character = None;
                match to {
                    Some(Listener::Agent(a)) => {
                        if let Some(e) = entity(a)
                            && let Ok((_, p, ..)) = agents.get(e)
                            && (c.distance_to(p) <= config.talk_radius || partner == Some(a))
                        {
                            heard.push(a);
                        }
                    }
                    Some(Listener::Character(other)) => to_character = Some(other),
                    None => {
                        for (idx, p, ..) in &agents {
                            if c.distance_to(p) <= config.talk_radius || partner == Some(idx.0) {
                                heard.push(idx.0);
                            }
                        }
                    }
                }
                heard.sort_unstable();
                if let Some((_, c)) = characters.get_mut(&name)
                    && let Some(t) = c.talk.as_mut()
                {
                    t.2 = now;
                }
                characters.touch(slot);
                outbox.push(
                    tick,
                    WorldEvent::PlayerSaid {
                        character: name,
                        text,
                        agents: heard,
                        to_character,
                        conversation,
                    },
                );
            }
            Command::Player(PlayerCommand::StartTalk { name, agent }) => {
                let Some((_, c)) = characters.get(&name) else {
                    continue;
                };
                if c.talk.is_some() {
                    continue;
                }
                let Some(e) = entity(agent) else {
                    continue;
                };
                let location = map.location_at(c.tile());
                let Ok((_, _, _, _, mut talk, _)) = agents.get_mut(e) else {
                    continue;
                };
                if talk.conversation.is_some() {
                    continue;
                }
                let id = conversations.next_id;
                conversations.next_id += 1;
                talk.conversation = Some(id);
                if let Some((_, c)) = characters.get_mut(&name) {
                    c.talk = Some((id, agent, now));
                    c.path.clear();
                }
                outbox.push(
                    tick,
                    WorldEvent::PlayerTalkStarted {
                        conversation: id,
                        character: name,
                        agent,
                        location,
                    },
                );
            }
            Command::Player(PlayerCommand::EndTalk { name }) => {
                let Some((_, c)) = characters.get_mut(&name) else {
                    continue;
                };
                if let Some((id, agent, _)) = c.talk.take() {
                    end_talk(
                        &mut agents,
                        entity(agent),
                        id,
                        &name,
                        agent,
                        tick,
                        &mut outbox,
                    );
                }
            }
            Command::Player(PlayerCommand::Interact { name, object }) => {
                let Some((_, c)) = characters.get(&name) else {
                    continue;
                };
                let here = c.tile();
                let found = map.locations.iter().enumerate().find_map(|(i, l)| {
                    l.objects
                        .iter()
                        .find(|o| {
                            o.name.eq_ignore_ascii_case(&object) && o.tile.distance(here) <= 2
                        })
                        .map(|o| (i as LocationId, o.name.clone()))
                });
                if let Some((location, object)) = found {
                    outbox.push(
                        tick,
                        WorldEvent::Interacted {
                            character: name,
                            object,
                            location: Some(location),
                        },
                    );
                }
            }
            Command::Answer {
                agent,
                character,
                heard,
                text,
            } => {
                let Some(e) = entity(agent) else {
                    continue;
                };
                let Ok((_, _, _, _, talk, _)) = agents.get(e) else {
                    continue;
                };
                let conversation = characters
                    .get(&character)
                    .and_then(|(_, c)| c.talk)
                    .filter(|t| t.1 == agent && talk.conversation == Some(t.0))
                    .map(|t| t.0);
                let agreeableness = defs
                    .agents
                    .get(agent as usize)
                    .map_or(0.5, |d| d.file.traits.personality.agreeableness);
                let tie = ties.0.entry((agent, character.clone())).or_insert(Tie {
                    affection: 0.0,
                    trust: 30.0,
                    interactions: 0,
                    last_interaction: now,
                });
                // a friendly exchange warms an agreeable agent more
                tie.affection = (tie.affection + 1.0 + 2.0 * agreeableness).clamp(-100.0, 100.0);
                tie.trust = (tie.trust + 1.0).clamp(0.0, 100.0);
                tie.interactions = tie.interactions.saturating_add(1);
                tie.last_interaction = now;
                let (affection, trust) = (tie.affection, tie.trust);
                outbox.push(
                    tick,
                    WorldEvent::AgentAnswered {
                        agent,
                        character: character.clone(),
                        heard,
                        text,
                        conversation,
                    },
                );
                outbox.push(
                    tick,
                    WorldEvent::CharacterTieChanged {
                        agent,
                        character,
                        affection,
                        trust,
                    },
                );
            }
            Command::Inspect { agent, reply } => {
                let Some(e) = entity(agent) else {
                    continue;
                };
                let Ok((_, _, activity, plan, _, relationships)) = agents.get(e) else {
                    continue;
                };
                let Some(def) = defs.agents.get(agent as usize) else {
                    continue;
                };
                let plan = (!plan.steps.is_empty()).then(|| {
                    (
                        plan.goal.clone(),
                        plan.steps.iter().map(|s| step_label(map, s)).collect(),
                        plan.current,
                    )
                });
                let mut relations: Vec<InspectedTie> = relationships
                    .0
                    .iter()
                    .map(|r| InspectedTie {
                        with: Who::Agent(r.target),
                        kind: r.kind.clone(),
                        affection: r.affection,
                        trust: r.trust,
                    })
                    .collect();
                relations.extend(
                    ties.0
                        .range((agent, String::new())..)
                        .take_while(|((a, _), _)| *a == agent)
                        .map(|((_, name), t)| InspectedTie {
                            with: Who::Character(name.clone()),
                            kind: "acquaintance".into(),
                            affection: t.affection,
                            trust: t.trust,
                        }),
                );
                reply.send(Inspection {
                    activity: activity_label(def, activity).to_owned(),
                    plan,
                    relationships: relations,
                });
            }
            // routed here by the inbox only when they concern characters
            Command::Pause
            | Command::Resume
            | Command::Throttle(_)
            | Command::SetTimeScale(_)
            | Command::Line { .. }
            | Command::DayPlan { .. }
            | Command::Steps { .. }
            | Command::React { .. }
            | Command::Reload(_) => {}
        }
    }
    // quiet player conversations end
    let quiet: Vec<(String, u64, u32)> = characters
        .present()
        .filter_map(|(_, c)| {
            c.talk
                .filter(|t| now.saturating_sub(t.2) >= TALK_IDLE_MINUTES)
                .map(|t| (c.name.clone(), t.0, t.1))
        })
        .collect();
    for (name, id, agent) in quiet {
        if let Some((_, c)) = characters.get_mut(&name) {
            c.talk = None;
        }
        end_talk(
            &mut agents,
            entity(agent),
            id,
            &name,
            agent,
            tick,
            &mut outbox,
        );
    }
}

fn end_talk(
    agents: &mut Query<AgentItem>,
    entity: Option<Entity>,
    id: u64,
    character: &str,
    agent: u32,
    tick: u64,
    outbox: &mut Outbox,
) {
    if let Some(e) = entity
        && let Ok((_, _, _, _, mut talk, _)) = agents.get_mut(e)
        && talk.conversation == Some(id)
    {
        talk.conversation = None;
    }
    outbox.push(
        tick,
        WorldEvent::PlayerTalkEnded {
            conversation: id,
            character: character.to_owned(),
            agent,
        },
    );
}

/// Characters walk along their paths at walking speed.
pub fn walk(
    clock: Res<GameClock>,
    config: Res<SimConfig>,
    map: Res<MapRes>,
    mut characters: ResMut<Characters>,
) {
    let step_len = config.walk_speed * clock.minutes_per_tick();
    let mut moved = Vec::new();
    for (slot, c) in characters.slots.iter_mut().enumerate() {
        if !c.present || c.path.is_empty() {
            continue;
        }
        let stride = super::movement::step_along(&mut c.path, (c.x, c.y), step_len, &map.0);
        (c.x, c.y) = stride.to;
        if let Some(f) = stride.facing {
            c.facing = f;
        }
        if stride.blocked {
            // the map changed under the path: stop here
            c.path.clear();
        }
        moved.push(slot as u32);
    }
    for slot in moved {
        characters.touch(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Sim, SimConfig};
    use hearth_content::synthetic;

    fn said(sim: &mut Sim) -> Vec<WorldEvent> {
        sim.drain_events().into_iter().map(|(_, e)| e).collect()
    }

    #[test]
    fn a_character_joins_walks_talks_and_leaves() {
        let mut sim = Sim::new(synthetic::world(30, 5), SimConfig::default());
        sim.step();
        sim.send(Command::Player(PlayerCommand::Join { name: "ada".into() }));
        sim.step();
        let chars = sim.world().resource::<Characters>();
        let (slot, c) = chars.get("ada").expect("joined");
        assert_eq!(slot, 0);
        let start = c.tile();
        // walk to agent 0
        let target = sim.get::<Position>(0).map(Position::tile).expect("agent 0");
        sim.send(Command::Player(PlayerCommand::StartTalk {
            name: "ada".into(),
            agent: 0,
        }));
        sim.step();
        let events = said(&mut sim);
        let id = events
            .iter()
            .find_map(|e| match e {
                WorldEvent::PlayerTalkStarted {
                    conversation,
                    agent: 0,
                    ..
                } => Some(*conversation),
                _ => None,
            })
            .expect("a player conversation began");
        assert_eq!(
            sim.get::<Talk>(0).and_then(|t| t.conversation),
            Some(id),
            "the agent holds the conversation and stands still"
        );
        // speaking in the conversation reaches the partner, however far
        sim.send(Command::Player(PlayerCommand::Say {
            name: "ada".into(),
            text: "Hello!".into(),
            to: None,
        }));
        sim.step();
        let heard = said(&mut sim).into_iter().find_map(|e| match e {
            WorldEvent::PlayerSaid {
                agents,
                conversation,
                ..
            } => Some((agents, conversation)),
            _ => None,
        });
        let (agents, conversation) = heard.expect("said");
        assert!(agents.contains(&0));
        assert_eq!(conversation, Some(id));
        // the answer warms the agent to her
        sim.send(Command::Answer {
            agent: 0,
            character: "ada".into(),
            heard: "Hello!".into(),
            text: "Good day to you.".into(),
        });
        sim.step();
        let events = said(&mut sim);
        assert!(events.iter().any(|e| matches!(e,
            WorldEvent::AgentAnswered { agent: 0, conversation: Some(c), .. } if *c == id)));
        let tie = sim.world().resource::<Ties>().0[&(0, "ada".to_owned())];
        assert!(tie.affection > 0.0 && tie.interactions == 1);
        // the inspection lists her
        let (tx, rx) = std::sync::mpsc::channel();
        sim.send(Command::Inspect {
            agent: 0,
            reply: crate::events::Reply::new(move |i| {
                let _ = tx.send(i);
            }),
        });
        sim.step();
        let inspection = rx.try_recv().expect("answered within the tick");
        assert!(
            inspection
                .relationships
                .iter()
                .any(|r| r.with == Who::Character("ada".into()))
        );
        // walking there
        sim.send(Command::Player(PlayerCommand::EndTalk {
            name: "ada".into(),
        }));
        sim.send(Command::Player(PlayerCommand::MoveTo {
            name: "ada".into(),
            to: target,
        }));
        for _ in 0..600 {
            sim.step();
        }
        let chars = sim.world().resource::<Characters>();
        let (_, c) = chars.get("ada").expect("still here");
        if find_path(sim.map(), start, target).is_some() {
            assert_eq!(c.tile(), target, "walked to the agent");
        }
        assert_ne!(
            sim.get::<Talk>(0).and_then(|t| t.conversation),
            Some(id),
            "the agent is free of the ended conversation"
        );
        sim.send(Command::Player(PlayerCommand::Leave { name: "ada".into() }));
        sim.step();
        let chars = sim.world().resource::<Characters>();
        assert!(chars.get("ada").is_none());
        assert!(chars.gone.contains(&0));
    }
}
