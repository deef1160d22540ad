//! What the world hands its write-behind writer, and how a world comes back
//! from it. Each tick [`snapshot`] (a system, in the outbound set) encodes
//! the agents whose components changed during the tick (bevy's change
//! detection; added agents count as changed, removed ones are listed) into
//! one compact blob each, kept until the flush; every flush interval it
//! hands them over as a [`WorldSnapshot`] with the world's own state (clock,
//! counters, conversations under way, path queue) in another blob. An agent
//! unchanged since its blob was made is still in that state, so the blobs
//! at a flush are a consistent cut of the world at that tick; encoding as
//! changes happen spreads the work evenly over the ticks instead of piling
//! it on the flush's (all agents' needs change once a game minute, each on
//! its own tick). No I/O: the runner passes the snapshot on, and the
//! database rows are built off the world's thread.
//! [`Sim::restore`](super::Sim::restore) reverses it.
//!
//! The blobs are postcard (a compact, stable serde format) behind a format
//! byte. Agents are referred to by index inside the world, so the world
//! state records the agents' slugs and the map's location names: a restore
//! into a world whose files changed maps indexes by slug and drops what no
//! longer exists. Touches the agents' components and the world's resources,
//! read-only, and its own [`Persistence`] resource.

use std::collections::HashMap;

use bevy_ecs::prelude::*;
use serde::{Deserialize, Serialize};

use super::clock::GameClock;
use super::components::*;
use super::conversation::{Conversation, Conversations};
use super::events::Paused;
use super::path::PathQueue;
use super::rng::WorldRng;
use super::{AgentIndex, MapRes, Stats};

/// The version of the blobs' layout; bumped whenever a serialized type
/// changes shape. A blob of another version is refused, never misread.
pub const FORMAT: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("saved state has format {found}, this hearth reads format {FORMAT}")]
    Format { found: u8 },
    #[error("saved state is empty")]
    Empty,
    #[error("saved state is corrupt: {0}")]
    Decode(#[from] postcard::Error),
}

/// One agent's changing state, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSim {
    /// The agent's index in the world when it was saved: the indexes other
    /// saved state refers to agents by.
    pub idx: u32,
    pub position: Position,
    pub facing: Facing,
    pub activity: Activity,
    pub plan: Plan,
    pub movement: Movement,
    pub needs: Needs,
    pub perception: Perception,
    pub talk: Talk,
}

/// The world's own state, as saved with each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldState {
    pub seed: u64,
    pub tick: u64,
    pub seconds: u64,
    pub paused: bool,
    pub stats: Stats,
    pub conversations: Vec<Conversation>,
    pub next_conversation: u64,
    /// Agents waiting for a path search, by index, in turn order.
    pub path_queue: Vec<u32>,
    /// The map's location names, by id, when this was saved.
    pub locations: Vec<String>,
}

/// An agent whose state changed.
#[derive(Debug, Clone, PartialEq)]
pub struct DirtyAgent {
    pub idx: u32,
    /// [`encode_agent`] of its components.
    pub sim: Vec<u8>,
    /// Its relationships, when they changed. They are saved as rows of their
    /// own (only when they change), not in the blob: they are most of an
    /// agent's state by size and change far less often than the rest.
    pub relationships: Option<Vec<Relationship>>,
    /// Its plan changed.
    pub plan: bool,
}

/// What changed since the previous snapshot, and the world at this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldSnapshot {
    pub tick: u64,
    pub game_seconds: u64,
    /// [`encode_world`] of the world's state.
    pub world: Vec<u8>,
    pub agents: Vec<DirtyAgent>,
    /// Agents that left the world.
    pub removed: Vec<u32>,
    /// Every agent is in `agents` (the first snapshot, or a final one).
    pub full: bool,
}

impl WorldSnapshot {
    /// Folds a newer snapshot into this one: the newest blob per agent, the
    /// newer world state, removals of both.
    pub fn merge(&mut self, newer: WorldSnapshot) {
        let mut at: HashMap<u32, usize> = self
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.idx, i))
            .collect();
        for a in newer.agents {
            match at.get(&a.idx) {
                Some(&i) => {
                    let old = &mut self.agents[i];
                    let relationships = a.relationships.or_else(|| old.relationships.take());
                    let plan = old.plan || a.plan;
                    *old = DirtyAgent {
                        relationships,
                        plan,
                        ..a
                    };
                }
                None => {
                    at.insert(a.idx, self.agents.len());
                    self.agents.push(a);
                }
            }
        }
        self.removed.extend(newer.removed);
        self.tick = newer.tick;
        self.game_seconds = newer.game_seconds;
        self.world = newer.world;
        self.full |= newer.full;
    }
}

/// Saved parts of an agent's blob: its index, then each component of
/// [`AgentSim`], in field order.
const PARTS: usize = 9;

/// An agent changed since the last snapshot.
#[derive(Debug, Clone, Default)]
struct Pending {
    /// The blob as of the agent's last change.
    sim: Vec<u8>,
    relationships: Option<Vec<Relationship>>,
    plan: bool,
}

/// When snapshots are taken, what changed since the last one, and the
/// snapshot waiting to be picked up.
///
/// Each agent's blob is kept as its parts, one per component, re-encoded
/// only when that component changes: postcard encodes a struct as the
/// concatenation of its fields, so the parts laid end to end are exactly
/// the blob of the whole [`AgentSim`]. A tick thus encodes the components
/// that changed during it (for most agents, a few bytes of needs or
/// position), and a flush concatenates the parts of the agents that changed.
#[derive(Debug, Default, Resource)]
pub struct Persistence {
    /// Ticks between snapshots; 0 turns them off.
    pub every: u64,
    pub next_due: u64,
    /// The next pass encodes every component of every agent.
    pub full: bool,
    /// By agent index: the encoded parts, kept between snapshots.
    parts: Vec<[Vec<u8>; PARTS]>,
    /// By agent index: changed since the last snapshot.
    pending: Vec<Option<Pending>>,
    /// The indexes in `pending`, in the order they first changed.
    dirty: Vec<u32>,
    pub out: Option<WorldSnapshot>,
}

impl Persistence {
    /// The agents changed since the last snapshot, with their blobs.
    fn take_dirty(&mut self) -> Vec<DirtyAgent> {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        let out = dirty
            .iter()
            .filter_map(|&i| {
                let pending = self.pending.get_mut(i as usize)?.take()?;
                Some(DirtyAgent {
                    idx: i,
                    sim: pending.sim,
                    relationships: pending.relationships,
                    plan: pending.plan,
                })
            })
            .collect();
        dirty.clear();
        self.dirty = dirty;
        out
    }
}

/// Run condition: persistence is on.
pub fn persisting(persistence: Res<Persistence>) -> bool {
    persistence.every > 0
}

type Saved<'a> = (
    &'a AgentIdx,
    Ref<'a, Position>,
    Ref<'a, Facing>,
    Ref<'a, Activity>,
    Ref<'a, Plan>,
    Ref<'a, Movement>,
    Ref<'a, Needs>,
    Ref<'a, Perception>,
    Ref<'a, Talk>,
    Ref<'a, Relationships>,
);

type AnyChanged = Or<(
    Changed<Position>,
    Changed<Facing>,
    Changed<Activity>,
    Changed<Plan>,
    Changed<Movement>,
    Changed<Needs>,
    Changed<Perception>,
    Changed<Talk>,
    Changed<Relationships>,
)>;

/// Encodes `value` into `part` (reusing its allocation) through `scratch`.
fn encode_part<T: Serialize + ?Sized>(value: &T, part: &mut Vec<u8>, scratch: &mut [u8]) {
    part.clear();
    match postcard::to_slice(value, scratch) {
        Ok(used) => part.extend_from_slice(used),
        Err(_) => match postcard::to_extend(value, std::mem::take(part)) {
            Ok(v) => *part = v,
            Err(e) => tracing::error!(error = %e, "cannot serialize an agent's state"),
        },
    }
}

/// Encodes what changed during this tick and, when a flush is due, hands
/// the changed agents over with the world's state in
/// [`Persistence::out`] (merged with a snapshot nobody picked up yet, so
/// none is lost).
#[expect(
    clippy::too_many_arguments,
    reason = "a bevy system takes what it touches as parameters"
)]
pub fn snapshot(
    mut persistence: ResMut<Persistence>,
    clock: Res<GameClock>,
    rng: Res<WorldRng>,
    paused: Res<Paused>,
    stats: Res<Stats>,
    conversations: Res<Conversations>,
    queue: Res<PathQueue>,
    map: Res<MapRes>,
    changed: Query<Saved, AnyChanged>,
    all: Query<Saved>,
    idx_of: Query<&AgentIdx>,
    mut removed: RemovedComponents<AgentIdx>,
    index: Res<AgentIndex>,
) {
    let full = persistence.full;
    let due = full || clock.tick >= persistence.next_due;
    let mut scratch = [0u8; 4096];
    let p = &mut *persistence;
    if p.parts.len() < index.0.len() {
        p.parts.resize_with(index.0.len(), Default::default);
        p.pending.resize(index.0.len(), None);
    }
    let items: Box<dyn Iterator<Item = Saved<'_>>> = if full {
        Box::new(all.iter())
    } else {
        Box::new(changed.iter())
    };
    for (idx, position, facing, activity, plan, movement, needs, perception, talk, rels) in items {
        let i = idx.0 as usize;
        if i >= p.parts.len() {
            p.parts.resize_with(i + 1, Default::default);
            p.pending.resize(i + 1, None);
        }
        let parts = &mut p.parts[i];
        if full || parts[0].is_empty() {
            encode_part(&idx.0, &mut parts[0], &mut scratch);
        }
        macro_rules! part {
            ($n:expr, $c:expr) => {
                if full || $c.is_changed() || parts[$n].is_empty() {
                    encode_part(&*$c, &mut parts[$n], &mut scratch);
                }
            };
        }
        part!(1, position);
        part!(2, facing);
        part!(3, activity);
        part!(4, plan);
        part!(5, movement);
        part!(6, needs);
        part!(7, perception);
        part!(8, talk);
        let pending = match &mut p.pending[i] {
            Some(pending) => pending,
            slot @ None => {
                p.dirty.push(idx.0);
                slot.insert(Pending::default())
            }
        };
        pending.plan |= full || plan.is_changed();
        if full || rels.is_changed() {
            match &mut pending.relationships {
                Some(kept) => kept.clone_from(&rels.0),
                None => pending.relationships = Some(rels.0.clone()),
            }
        }
        // the blob as of now, laid end to end from the parts, so that the
        // flush only hands blobs over
        let parts = &p.parts[i];
        pending.sim.clear();
        pending
            .sim
            .reserve(1 + parts.iter().map(Vec::len).sum::<usize>());
        pending.sim.push(FORMAT);
        for part in parts {
            pending.sim.extend_from_slice(part);
        }
    }
    persistence.full = false;
    if !due {
        return;
    }
    let agents = persistence.take_dirty();
    // removal detection: entities that lost their AgentIdx (left the world)
    let gone: Vec<u32> = removed
        .read()
        .filter_map(|e| index.0.iter().position(|&x| x == e))
        .map(|i| i as u32)
        .collect();
    let state = WorldState {
        seed: rng.seed,
        tick: clock.tick,
        seconds: clock.seconds,
        paused: paused.0,
        stats: stats.clone(),
        conversations: conversations.active.clone(),
        next_conversation: conversations.next_id,
        path_queue: queue
            .entities()
            .filter_map(|e| idx_of.get(e).ok().map(|i| i.0))
            .collect(),
        locations: map.0.locations.iter().map(|l| l.name.clone()).collect(),
    };
    let snapshot = WorldSnapshot {
        tick: clock.tick,
        game_seconds: clock.seconds,
        world: encode(&state),
        agents,
        removed: gone,
        full,
    };
    match persistence.out.as_mut() {
        Some(waiting) => waiting.merge(snapshot),
        None => persistence.out = Some(snapshot),
    }
    // on multiples of the interval, whenever the first one was
    let every = persistence.every.max(1);
    persistence.next_due = (clock.tick / every + 1) * every;
}

/// `FORMAT` then postcard.
fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(FORMAT);
    // writing into a Vec cannot fail but for a type serde cannot express,
    // and every saved type is plain data
    match postcard::to_extend(value, out) {
        Ok(out) => out,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize world state");
            vec![FORMAT]
        }
    }
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, PersistError> {
    match bytes.split_first() {
        None => Err(PersistError::Empty),
        Some((&FORMAT, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&found, _)) => Err(PersistError::Format { found }),
    }
}

/// An agent's components from its saved blob.
pub fn decode_agent(bytes: &[u8]) -> Result<AgentSim, PersistError> {
    decode(bytes)
}

/// The world's state from its saved blob.
pub fn decode_world(bytes: &[u8]) -> Result<WorldState, PersistError> {
    decode(bytes)
}

/// An agent's components as a blob (what [`snapshot`] saves).
pub fn encode_agent(agent: &AgentSim) -> Vec<u8> {
    encode(agent)
}

pub fn encode_world(state: &WorldState) -> Vec<u8> {
    encode(state)
}

/// Rewrites agent indexes saved under another agent list: `map[old]` is the
/// new index, `None` for an agent that is gone (references to it are
/// dropped).
pub fn remap_agent(agent: &mut AgentSim, map: &[Option<u32>]) {
    let to = |i: u32| map.get(i as usize).copied().flatten();
    agent.talk.cooldowns.retain_mut(|(o, _)| match to(*o) {
        Some(t) => {
            *o = t;
            true
        }
        None => false,
    });
    agent
        .perception
        .recent
        .retain_mut(|(o, _, _)| match to(*o) {
            Some(t) => {
                *o = t;
                true
            }
            None => false,
        });
    agent.perception.fresh.retain_mut(|(o, _, _)| match to(*o) {
        Some(t) => {
            *o = t;
            true
        }
        None => false,
    });
    agent.perception.reach = agent
        .perception
        .reach
        .and_then(|(o, d)| to(o).map(|t| (t, d)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Sim, SimConfig};
    use hearth_content::synthetic;

    #[test]
    fn blobs_round_trip_and_refuse_other_formats() {
        let mut sim = Sim::new(synthetic::world(30, 3), SimConfig::default());
        for _ in 0..200 {
            sim.step();
        }
        let e = sim.entity(4).expect("agent");
        let w = sim.world();
        let agent = AgentSim {
            idx: 4,
            position: *w.get::<Position>(e).expect("c"),
            facing: *w.get::<Facing>(e).expect("c"),
            activity: w.get::<Activity>(e).expect("c").clone(),
            plan: w.get::<Plan>(e).expect("c").clone(),
            movement: w.get::<Movement>(e).expect("c").clone(),
            needs: *w.get::<Needs>(e).expect("c"),
            perception: w.get::<Perception>(e).expect("c").clone(),
            talk: w.get::<Talk>(e).expect("c").clone(),
        };
        let blob = encode_agent(&agent);
        assert_eq!(decode_agent(&blob).expect("decodes"), agent);
        // the snapshot's blob, laid end to end from its parts, is the same bytes
        let snapshot = sim.full_snapshot().expect("snapshot");
        let part_blob = &snapshot
            .agents
            .iter()
            .find(|a| a.idx == 4)
            .expect("agent 4")
            .sim;
        assert_eq!(part_blob, &blob);
        let mut other = blob.clone();
        other[0] = FORMAT + 1;
        assert!(matches!(
            decode_agent(&other),
            Err(PersistError::Format { found }) if found == FORMAT + 1
        ));
        assert!(matches!(decode_agent(&[]), Err(PersistError::Empty)));
        assert!(matches!(
            decode_agent(&blob[..blob.len() / 2]),
            Err(PersistError::Decode(_))
        ));
    }

    #[test]
    fn remapping_drops_agents_that_are_gone() {
        let mut a = AgentSim {
            idx: 2,
            position: Position { x: 1.0, y: 2.0 },
            facing: Facing::N,
            activity: Activity {
                block: None,
                override_reason: None,
                location: 0,
                since: 0,
                until: 0,
                sleep: false,
            },
            plan: Plan {
                id: 1,
                goal: "g".into(),
                steps: vec![],
                current: 0,
                status: PlanStatus::Done,
                priority: 1,
                deadline: 0,
            },
            movement: Movement::default(),
            needs: Needs::default(),
            perception: Perception {
                recent: vec![(0, 1, 5), (2, 1, 5)],
                fresh: vec![(2, 0, 1.0)],
                reach: Some((0, 1.0)),
            },
            talk: Talk {
                conversation: None,
                cooldowns: vec![(0, 9), (2, 9)],
                count: 0,
            },
        };
        // agent 0 is gone, 2 became 0
        remap_agent(&mut a, &[None, Some(1), Some(0)]);
        assert_eq!(a.talk.cooldowns, vec![(0, 9)]);
        assert_eq!(a.perception.recent, vec![(0, 1, 5)]);
        assert_eq!(a.perception.fresh, vec![(0, 0, 1.0)]);
        assert_eq!(a.perception.reach, None);
    }
}

#[cfg(test)]
mod resume_tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::mind::RuleMind;
    use crate::{Saved, Sim, SimConfig};
    use hearth_content::synthetic;

    /// What the database would hold after committing every snapshot so far.
    #[derive(Default)]
    struct Store {
        world: Vec<u8>,
        agents: HashMap<u32, Vec<u8>>,
        relationships: HashMap<u32, Vec<Relationship>>,
    }

    impl Store {
        fn commit(&mut self, s: WorldSnapshot) {
            self.world = s.world;
            for a in s.agents {
                self.agents.insert(a.idx, a.sim);
                if let Some(r) = a.relationships {
                    self.relationships.insert(a.idx, r);
                }
            }
        }

        fn saved(&self, sim: &Sim) -> Saved {
            let slug = |i: u32| sim.defs()[i as usize].file.id.clone();
            Saved {
                world: self.world.clone(),
                agents: self
                    .agents
                    .iter()
                    .map(|(i, b)| (slug(*i), b.clone()))
                    .collect(),
                relationships: self
                    .relationships
                    .iter()
                    .map(|(i, rels)| {
                        (
                            slug(*i),
                            rels.iter().map(|r| (slug(r.target), r.clone())).collect(),
                        )
                    })
                    .collect(),
            }
        }
    }

    fn run(sim: &mut Sim, store: &mut Store, ticks: u64) {
        for _ in 0..ticks {
            sim.step();
            if let Some(s) = sim.take_snapshot() {
                store.commit(s);
            }
        }
    }

    #[test]
    fn a_resumed_world_has_the_checkpoints_hash_and_goes_on_the_same() {
        let config = SimConfig {
            seed: 11,
            ..SimConfig::default()
        };
        let mut sim = Sim::new(synthetic::world(60, 11), config.clone());
        sim.persist_every(10);
        let mut store = Store::default();
        // 995 ticks: the last snapshot was at tick 990, then five more ticks
        run(&mut sim, &mut store, 990);
        let at_checkpoint = sim.state_hash();
        run(&mut sim, &mut store, 5);
        assert!(sim.stats().conversations_started > 0, "something happened");
        // only what changed was saved after the first snapshot
        let saved = store.saved(&sim);
        assert_eq!(saved.agents.len(), 60);

        // a different seed in the configuration: the saved one wins
        let (mut resumed, report) = Sim::restore(
            synthetic::world(60, 11),
            SimConfig {
                seed: 999,
                ..config
            },
            Arc::new(RuleMind),
            &saved,
        )
        .expect("restores");
        assert_eq!(report.restored, 60);
        assert_eq!(resumed.clock().tick, 990);
        assert_eq!(resumed.state_hash(), at_checkpoint);

        // both go on alike: the resumed one replays the five lost ticks
        let mut original = sim;
        let mut ignore = Store::default();
        run(&mut resumed, &mut ignore, 5 + 1000);
        run(&mut original, &mut ignore, 1000);
        assert_eq!(resumed.clock().tick, original.clock().tick);
        assert_eq!(resumed.state_hash(), original.state_hash());
        assert_eq!(resumed.stats(), original.stats());
    }

    #[test]
    fn a_world_whose_agents_changed_resumes_what_it_can() {
        let mut sim = Sim::new(synthetic::world(30, 4), SimConfig::default());
        sim.persist_every(10);
        let mut store = Store::default();
        run(&mut sim, &mut store, 600);
        let mut saved = store.saved(&sim);
        // one agent's blob is corrupt: a clear error, not a panic
        let slug = sim.defs()[3].file.id.clone();
        let good = saved.agents.insert(slug.clone(), vec![FORMAT, 0xff]);
        assert!(matches!(
            Sim::restore(
                synthetic::world(30, 4),
                SimConfig::default(),
                Arc::new(RuleMind),
                &saved
            ),
            Err(PersistError::Decode(_))
        ));
        saved.agents.insert(slug, good.expect("blob"));
        // the files now hold 20 of the 30 agents
        let mut fewer = synthetic::world(30, 4);
        fewer.agents.truncate(20);
        for a in &mut fewer.agents {
            a.file.relationships.retain(|r| r.target.as_str() < "zzzz");
        }
        let (mut resumed, report) =
            Sim::restore(fewer, SimConfig::default(), Arc::new(RuleMind), &saved)
                .expect("restores");
        assert_eq!((report.restored, report.dropped), (20, 10));
        for i in 0..20 {
            let rels = resumed.get::<Relationships>(i).expect("relationships");
            assert!(rels.0.iter().all(|r| r.target < 20));
        }
        for _ in 0..300 {
            resumed.step();
        }
        assert_eq!(resumed.clock().tick, 900);
    }
}
