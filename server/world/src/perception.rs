//! Perception: a grid hash of every agent's position, rebuilt each tick, lets
//! an agent find the others within its vision radius cheaply. Each agent looks
//! once per `perceive_every` ticks (spread over the ticks), attends to the
//! nearest few (Generative Agents: 4 tiles, 3 nearest), and ignores what it
//! perceived recently (the same agent doing the same thing). Perceptions are
//! events, and those close enough are conversation candidates. The grid
//! also lists the agents due to look this tick and indexes the map's
//! locations by tile. Touches `Perception`, the grid, candidates, stats and
//! the outbox.

use std::sync::Arc;

use bevy_ecs::prelude::*;

use super::clock::GameClock;
use super::components::{Activity, AgentIdx, Needs, Perception, Position, Talk};
use super::events::{Outbox, WorldEvent};
use super::schedule::ActivityLabel;
use super::{Defs, MapRes, SimConfig, Stats};
use hearth_content::{LocationId, Tile, WorldMap};

/// What the grid knows of an agent.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub idx: u32,
    pub x: f32,
    pub y: f32,
    /// The agent's schedule block (`u16::MAX` for none) and override, packed.
    pub doing: u32,
    pub location: LocationId,
    pub free: bool,
}

/// An agent due to look this tick, as the grid saw it (so that looking
/// touches no component but the looker's own `Perception`).
#[derive(Debug, Clone, Copy)]
pub struct Looker {
    pub entity: Entity,
    pub idx: u32,
    pub x: f32,
    pub y: f32,
    /// In a conversation: it looks, but does not look for someone to talk to.
    pub talking: bool,
}

/// Agents bucketed by square cells of `cell` tiles (counting sort, rebuilt
/// each tick: O(agents + cells), no allocation once warm), and the agents
/// due to look this tick.
#[derive(Debug, Default, Resource)]
pub struct SpatialGrid {
    cell: f32,
    cols: usize,
    rows: usize,
    /// `starts[c]..starts[c + 1]` indexes `items` for cell `c`.
    starts: Vec<u32>,
    items: Vec<Seen>,
    scratch: Vec<(u32, Seen)>,
    fill: Vec<u32>,
    /// The agents due to look this tick, in query order.
    pub lookers: Vec<Looker>,
    /// The location of each tile of `tiles_of`, `NO_LOCATION` for none:
    /// `WorldMap::location_at` (a scan of every location) made a lookup.
    tile_locations: Vec<LocationId>,
    tiles_of: Option<Arc<WorldMap>>,
}

const NO_LOCATION: LocationId = LocationId::MAX;

impl SpatialGrid {
    pub fn rebuild(
        &mut self,
        width: u16,
        height: u16,
        cell: f32,
        agents: impl Iterator<Item = Seen>,
    ) {
        self.cell = cell.max(1.0);
        self.cols = (f32::from(width) / self.cell).ceil() as usize + 1;
        self.rows = (f32::from(height) / self.cell).ceil() as usize + 1;
        let cells = self.cols * self.rows;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend(agents.map(|s| (self.cell_of(s.x, s.y) as u32, s)));
        self.starts.clear();
        self.starts.resize(cells + 1, 0);
        for (c, _) in &scratch {
            self.starts[*c as usize + 1] += 1;
        }
        for i in 0..cells {
            self.starts[i + 1] += self.starts[i];
        }
        self.items.clear();
        self.items.resize(
            scratch.len(),
            Seen {
                idx: 0,
                x: 0.0,
                y: 0.0,
                doing: 0,
                location: 0,
                free: false,
            },
        );
        self.fill.clear();
        self.fill.extend_from_slice(&self.starts[..cells]);
        for (c, s) in &scratch {
            let at = &mut self.fill[*c as usize];
            self.items[*at as usize] = *s;
            *at += 1;
        }
        self.scratch = scratch;
    }

    /// Indexes the locations of `map` by tile, unless it is the map already
    /// indexed (a shared map never changes).
    pub fn index_locations(&mut self, map: &Arc<WorldMap>) {
        if self.tiles_of.as_ref().is_some_and(|m| Arc::ptr_eq(m, map)) {
            return;
        }
        let (w, h) = (usize::from(map.width), usize::from(map.height));
        self.tile_locations.clear();
        self.tile_locations.resize(w * h, NO_LOCATION);
        // the first location holding a tile wins, as in `WorldMap::location_at`
        for (i, l) in map.locations.iter().enumerate().rev() {
            for t in l.rect.tiles() {
                if usize::from(t.x) < w && usize::from(t.y) < h {
                    self.tile_locations[usize::from(t.y) * w + usize::from(t.x)] = i as LocationId;
                }
            }
        }
        self.tiles_of = Some(map.clone());
    }

    /// The location holding tile `t` of `map`: `map.location_at(t)`, looked
    /// up when `map` is the one indexed.
    pub fn location_at(&self, map: &Arc<WorldMap>, t: Tile) -> Option<LocationId> {
        if let Some(indexed) = &self.tiles_of
            && Arc::ptr_eq(indexed, map)
            && t.x < map.width
            && t.y < map.height
        {
            let l =
                self.tile_locations[usize::from(t.y) * usize::from(map.width) + usize::from(t.x)];
            return (l != NO_LOCATION).then_some(l);
        }
        map.location_at(t)
    }

    fn cell_of(&self, x: f32, y: f32) -> usize {
        let cx = ((x / self.cell).max(0.0) as usize).min(self.cols - 1);
        let cy = ((y / self.cell).max(0.0) as usize).min(self.rows - 1);
        cy * self.cols + cx
    }

    /// Every agent within `radius` of (x, y), with its distance.
    pub fn near(&self, x: f32, y: f32, radius: f32, mut f: impl FnMut(&Seen, f32)) {
        if self.items.is_empty() {
            return;
        }
        let r = (radius / self.cell).ceil() as i64;
        let r2 = radius * radius;
        let cx = ((x / self.cell).max(0.0) as i64).min(self.cols as i64 - 1);
        let cy = ((y / self.cell).max(0.0) as i64).min(self.rows as i64 - 1);
        for gy in (cy - r).max(0)..=(cy + r).min(self.rows as i64 - 1) {
            for gx in (cx - r).max(0)..=(cx + r).min(self.cols as i64 - 1) {
                let c = gy as usize * self.cols + gx as usize;
                for s in &self.items[self.starts[c] as usize..self.starts[c + 1] as usize] {
                    let d2 = (s.x - x) * (s.x - x) + (s.y - y) * (s.y - y);
                    if d2 <= r2 {
                        f(s, d2.sqrt());
                    }
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Worlds smaller than this perceive on one thread (see [`perceive`]).
pub const PARALLEL_MIN_AGENTS: usize = 50_000;

/// Pairs close enough to talk, found this tick: (perceiver, other, distance).
#[derive(Debug, Default, Resource)]
pub struct TalkCandidates(pub Vec<(u32, u32, f32)>);

fn packed(activity: &Activity) -> u32 {
    let block = u32::from(activity.block.unwrap_or(u16::MAX));
    let reason = activity.override_reason.map_or(0, |r| r as u32 + 1);
    (block << 8) | reason
}

/// Rebuilds the grid from every agent's position, and lists the agents due
/// to look this tick (their slot, and awake).
pub fn index_positions(
    clock: Res<GameClock>,
    map: Res<MapRes>,
    config: Res<SimConfig>,
    mut grid: ResMut<SpatialGrid>,
    agents: Query<(Entity, &AgentIdx, &Position, &Activity, &Needs, &Talk)>,
) {
    let every = u64::from(config.perceive_every.max(1));
    let slot = clock.tick % every;
    let mut lookers = std::mem::take(&mut grid.lookers);
    lookers.clear();
    let seen = agents.iter().map(|(entity, idx, p, a, n, t)| {
        if u64::from(idx.0) % every == slot && !n.sleeping {
            lookers.push(Looker {
                entity,
                idx: idx.0,
                x: p.x,
                y: p.y,
                talking: t.conversation.is_some(),
            });
        }
        Seen {
            idx: idx.0,
            x: p.x,
            y: p.y,
            doing: packed(a),
            location: a.location,
            free: !n.sleeping && t.conversation.is_none(),
        }
    });
    grid.rebuild(map.0.width, map.0.height, config.vision_radius, seen);
    grid.lookers = lookers;
    grid.index_locations(&map.0);
}

/// What one look found: the nearest few, nearest first.
type Found = (f32, Seen);

/// Looks around for every agent due this tick (`SpatialGrid::lookers`). The
/// scan of the grid, the costly part, reads only the grid and runs in
/// parallel in large worlds, each looker writing its own slots of a flat
/// buffer; what it found is then applied in the lookers' order, so
/// perceptions, candidates, events and counts are the same whatever the
/// thread count.
#[expect(
    clippy::too_many_arguments,
    reason = "a bevy system takes what it touches as parameters"
)]
pub fn perceive(
    clock: Res<GameClock>,
    config: Res<SimConfig>,
    defs: Res<Defs>,
    map: Res<MapRes>,
    grid: Res<SpatialGrid>,
    mut candidates: ResMut<TalkCandidates>,
    mut stats: ResMut<Stats>,
    mut outbox: ResMut<Outbox>,
    mut perceptions: Query<&mut Perception>,
    mut found: Local<Vec<Found>>,
    mut counts: Local<Vec<usize>>,
) {
    candidates.0.clear();
    let now = clock.minutes();
    let grid: &SpatialGrid = &grid;
    let config: &SimConfig = &config;
    let lookers = &grid.lookers;
    let k = config.attention;
    let empty = Seen {
        idx: 0,
        x: 0.0,
        y: 0.0,
        doing: 0,
        location: 0,
        free: false,
    };
    found.clear();
    found.resize(lookers.len() * k, (0.0, empty));
    counts.clear();
    counts.resize(lookers.len(), 0);
    if k > 0 {
        // measured (BENCHMARKS.md): on 2 cores the parallel pass pays off from
        // tens of thousands of agents and costs more than it saves below
        let parallel = config.parallel && grid.len() >= PARALLEL_MIN_AGENTS;
        if parallel {
            let pool = bevy_tasks::ComputeTaskPool::get_or_init(bevy_tasks::TaskPool::default);
            // a few chunks per thread, so a slow thread does not hold up the rest
            let chunk = lookers.len().div_ceil(4 * pool.thread_num().max(1)).max(1);
            pool.scope(|scope| {
                for ((lookers, found), counts) in lookers
                    .chunks(chunk)
                    .zip(found.chunks_mut(chunk * k))
                    .zip(counts.chunks_mut(chunk))
                {
                    scope.spawn(async move {
                        scan_all(grid, config, lookers, found, counts);
                    });
                }
            });
        } else {
            scan_all(grid, config, lookers, &mut found, &mut counts);
        }
    }

    for (i, looker) in lookers.iter().enumerate() {
        let Ok(mut perception) = perceptions.get_mut(looker.entity) else {
            continue;
        };
        let nearest = &found[i * k..i * k + counts[i]];
        look(config, now, looker, nearest, &mut perception);
        if let Some((other, d)) = perception.reach {
            candidates.0.push((looker.idx, other, d));
        }
        stats.perceptions += perception.fresh.len() as u64;
        if !config.emit_perception_events || perception.fresh.is_empty() {
            continue;
        }
        let position = Position {
            x: looker.x,
            y: looker.y,
        };
        let location = grid.location_at(&map.0, position.tile());
        for &(other, doing, distance) in &perception.fresh {
            let def = &defs.agents[other as usize];
            let block = (doing >> 8) as u16;
            let label = ActivityLabel::of_block(def, (block != u16::MAX).then_some(block)).as_str();
            outbox.push(
                clock.tick,
                WorldEvent::Perceived {
                    agent: looker.idx,
                    other,
                    activity: label.to_owned(),
                    location,
                    distance,
                },
            );
        }
    }
    // the same pair may be found from both sides: keep one, lowest first
    for c in candidates.0.iter_mut() {
        if c.0 > c.1 {
            *c = (c.1, c.0, c.2);
        }
    }
    candidates.0.sort_by_key(|c| (c.0, c.1));
    candidates.0.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
}

/// Scans the grid for each of `lookers`: looker `i` gets `found[i * k..]`
/// (`k` = attention) and `counts[i]`.
fn scan_all(
    grid: &SpatialGrid,
    config: &SimConfig,
    lookers: &[Looker],
    found: &mut [Found],
    counts: &mut [usize],
) {
    let k = config.attention;
    for ((looker, found), count) in lookers
        .iter()
        .zip(found.chunks_mut(k))
        .zip(counts.iter_mut())
    {
        *count = nearest(grid, config.vision_radius, looker, found);
    }
}

/// The nearest others within `radius` of `looker`, at most `out.len()`,
/// nearest first (ties by agent, so the result never depends on the grid's
/// order), into `out`; returns how many.
fn nearest(grid: &SpatialGrid, radius: f32, looker: &Looker, out: &mut [Found]) -> usize {
    // keep only the nearest few while scanning (insertion into a short sorted
    // list): a crowded room holds dozens, and attention takes three
    let k = out.len();
    let mut len = 0;
    grid.near(looker.x, looker.y, radius, |s, d| {
        if s.idx == looker.idx {
            return;
        }
        let closer = |e: &Found| e.0 < d || (e.0 == d && e.1.idx < s.idx);
        let at = out[..len].iter().take_while(|e| closer(e)).count();
        if at < k {
            let end = len.min(k - 1);
            out.copy_within(at..end, at + 1);
            out[at] = (d, *s);
            len = (len + 1).min(k);
        }
    });
    len
}

/// One agent's look around, from the nearest few it found: those not
/// perceived recently recorded as fresh, and the nearest free agent in
/// talking reach.
fn look(
    config: &SimConfig,
    now: u64,
    looker: &Looker,
    nearest: &[Found],
    perception: &mut Perception,
) {
    perception.fresh.clear();
    perception.reach = None;
    if nearest.is_empty() {
        return;
    }
    // forget what is older than the memory window
    let horizon = now.saturating_sub(u64::from(config.repeat_window_minutes));
    if perception.recent.iter().any(|r| r.2 < horizon) {
        perception.recent.retain(|r| r.2 >= horizon);
    }
    // the nearest free agent within reach is who one would talk to
    if !looker.talking {
        perception.reach = nearest
            .iter()
            .find(|(d, o)| o.free && *d <= config.talk_radius)
            .map(|(d, o)| (o.idx, *d));
    }
    for (d, other) in nearest {
        if perception
            .recent
            .iter()
            .any(|r| r.0 == other.idx && r.1 == other.doing)
        {
            continue;
        }
        perception.recent.push((other.idx, other.doing, now));
        perception.fresh.push((other.idx, other.doing, *d));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testkit::{self, events};
    use hearth_content::{AgentDef, WorldMap};

    fn def(id: &str) -> AgentDef {
        testkit::def(id, "See everything", testkit::working(&["bake", "sweep"]))
    }

    /// A world at 07:00 with an agent at each position, all free and baking
    /// (block 0), and a schedule of `index_positions` then `perceive`.
    fn setup(config: SimConfig, at: &[(f32, f32)]) -> (World, Vec<Entity>, Schedule) {
        let mut world = World::new();
        let clock = GameClock::new(config.tick_rate, config.game_minutes_per_second, 7 * 60);
        let now = clock.minutes();
        world.insert_resource(clock);
        world.insert_resource(Defs {
            agents: Arc::new((0..at.len()).map(|i| def(&format!("a{i}"))).collect()),
        });
        world.insert_resource(MapRes(Arc::new(WorldMap::generate(40, 30, 6, 1))));
        world.insert_resource(config);
        world.insert_resource(SpatialGrid::default());
        world.insert_resource(TalkCandidates::default());
        world.insert_resource(Stats::default());
        world.insert_resource(Outbox::default());
        let agents = at
            .iter()
            .enumerate()
            .map(|(i, &(x, y))| {
                world
                    .spawn(testkit::agent(
                        i as u32,
                        x,
                        y,
                        testkit::at_work(now),
                        Needs::default(),
                    ))
                    .id()
            })
            .collect();
        let mut schedule = Schedule::default();
        schedule.add_systems((index_positions, perceive).chain());
        (world, agents, schedule)
    }

    /// Every agent looks on every tick.
    fn every_tick() -> SimConfig {
        SimConfig {
            perceive_every: 1,
            ..SimConfig::default()
        }
    }

    /// (perceiver, other) of each `Perceived` event, in order.
    fn perceived(world: &mut World) -> Vec<(u32, u32)> {
        events(world)
            .into_iter()
            .filter_map(|e| match e {
                WorldEvent::Perceived { agent, other, .. } => Some((agent, other)),
                _ => None,
            })
            .collect()
    }

    fn seen_by(world: &World, e: Entity) -> Vec<u32> {
        let mut v: Vec<u32> = world
            .get::<Perception>(e)
            .expect("perception")
            .recent
            .iter()
            .map(|r| r.0)
            .collect();
        v.sort_unstable();
        v
    }

    fn perceptions(world: &World) -> u64 {
        world.resource::<Stats>().perceptions
    }

    fn set_minute(world: &mut World, minute: u64) {
        world.resource_mut::<GameClock>().seconds = minute * 60;
    }

    #[test]
    fn agents_attend_to_the_nearest_few_within_sight() {
        // around agent 0 at (10, 7): 2 at 1 tile, 4 at 2, 1 at 3, 3 at 3.5, 5 at 5 (out of sight)
        let (mut world, agents, mut schedule) = setup(
            every_tick(),
            &[
                (10.0, 7.0),
                (13.0, 7.0),
                (11.0, 7.0),
                (6.5, 7.0),
                (10.0, 5.0),
                (10.0, 12.0),
            ],
        );
        schedule.run(&mut world);
        assert_eq!(seen_by(&world, agents[0]), vec![1, 2, 4]);
        let mine: Vec<(u32, u32)> = perceived(&mut world)
            .into_iter()
            .filter(|p| p.0 == 0)
            .collect();
        // nearest first
        assert_eq!(mine, vec![(0, 2), (0, 4), (0, 1)]);
        // nobody is within 4 tiles of agent 5
        assert!(seen_by(&world, agents[5]).is_empty());
        assert!(agents.iter().all(|e| !seen_by(&world, *e).contains(&5)));
        // agent 3 (3.5 from agent 0, 4.03 from agent 4) sees only 0
        assert_eq!(seen_by(&world, agents[3]), vec![0]);
    }

    #[test]
    fn attention_and_vision_come_from_the_config() {
        let at = [
            (10.0, 7.0),
            (11.0, 7.0),
            (12.0, 7.0),
            (13.0, 7.0),
            (16.0, 7.0),
        ];
        let (mut world, agents, mut schedule) = setup(
            SimConfig {
                attention: 1,
                vision_radius: 6.0,
                ..every_tick()
            },
            &at,
        );
        schedule.run(&mut world);
        assert_eq!(seen_by(&world, agents[0]), vec![1]);
        assert_eq!(seen_by(&world, agents[4]), vec![3]);
        let (mut world, agents, mut schedule) = setup(
            SimConfig {
                attention: 10,
                vision_radius: 6.0,
                ..every_tick()
            },
            &at,
        );
        schedule.run(&mut world);
        assert_eq!(seen_by(&world, agents[0]), vec![1, 2, 3, 4]);
        let (mut world, agents, mut schedule) = setup(
            SimConfig {
                attention: 0,
                ..every_tick()
            },
            &at,
        );
        schedule.run(&mut world);
        assert!(agents.iter().all(|e| seen_by(&world, *e).is_empty()));
        assert_eq!(perceptions(&world), 0);
    }

    #[test]
    fn the_same_sight_is_not_counted_again_within_the_window() {
        let (mut world, agents, mut schedule) = setup(every_tick(), &[(10.0, 7.0), (11.0, 7.0)]);
        let start = world.resource::<GameClock>().minutes();
        schedule.run(&mut world);
        assert_eq!(perceptions(&world), 2);
        assert_eq!(perceived(&mut world), vec![(0, 1), (1, 0)]);
        for minute in [start, start + 1, start + 29] {
            set_minute(&mut world, minute);
            schedule.run(&mut world);
        }
        assert_eq!(perceptions(&world), 2);
        assert!(perceived(&mut world).is_empty());
        // the other agent does something else: that is news
        world
            .get_mut::<Activity>(agents[1])
            .expect("activity")
            .block = Some(1);
        schedule.run(&mut world);
        assert_eq!(perceptions(&world), 3);
        let Some(WorldEvent::Perceived {
            agent,
            other,
            activity,
            distance,
            ..
        }) = events(&mut world).pop()
        else {
            panic!("a perception");
        };
        assert_eq!(
            (agent, other, activity.as_str(), distance),
            (0, 1, "sweep", 1.0)
        );
        // after the window the same sight counts again
        set_minute(&mut world, start + 31);
        schedule.run(&mut world);
        assert_eq!(perceptions(&world), 4, "agent 1 sees agent 0 baking again");
        set_minute(&mut world, start + 29 + 31);
        schedule.run(&mut world);
        assert_eq!(
            perceptions(&world),
            5,
            "agent 0 sees agent 1 sweeping again"
        );
        // and what is older than the window is forgotten
        let recent = &world
            .get::<Perception>(agents[0])
            .expect("perception")
            .recent;
        assert_eq!(recent.len(), 1);
    }

    #[test]
    fn a_sleeping_agent_perceives_nothing_but_is_seen() {
        let (mut world, agents, mut schedule) = setup(every_tick(), &[(10.0, 7.0), (11.0, 7.0)]);
        world.get_mut::<Needs>(agents[0]).expect("needs").sleeping = true;
        schedule.run(&mut world);
        assert!(seen_by(&world, agents[0]).is_empty());
        assert_eq!(seen_by(&world, agents[1]), vec![0]);
        assert_eq!(perceived(&mut world), vec![(1, 0)]);
        assert!(world.resource::<TalkCandidates>().0.is_empty());
    }

    #[test]
    fn talk_candidates_are_free_pairs_within_reach_once_each() {
        let (mut world, agents, mut schedule) = setup(
            every_tick(),
            &[
                // 0 and 1 within reach
                (2.0, 7.0),
                (4.0, 7.0),
                // 2 in sight of 1 but out of reach (3 tiles)
                (7.0, 7.0),
                // 3 in a conversation next to 4
                (15.0, 7.0),
                (16.0, 7.0),
                // 5 asleep next to 6
                (25.0, 7.0),
                (26.0, 7.0),
                // 8 and 7 within reach, higher index first in space
                (35.5, 7.0),
                (34.0, 7.0),
            ],
        );
        world.get_mut::<Talk>(agents[3]).expect("talk").conversation = Some(1);
        world.get_mut::<Needs>(agents[5]).expect("needs").sleeping = true;
        schedule.run(&mut world);
        assert_eq!(
            world.resource::<TalkCandidates>().0,
            vec![(0, 1, 2.0), (7, 8, 1.5)]
        );
        // 3 still perceives 4, it just cannot start talking
        assert_eq!(seen_by(&world, agents[3]), vec![4]);
        // candidates are per tick: cleared when nobody looks
        world.get_mut::<Talk>(agents[3]).expect("talk").conversation = None;
        world.resource_mut::<SimConfig>().perceive_every = 50;
        world.resource_mut::<GameClock>().tick = 49;
        schedule.run(&mut world);
        assert!(world.resource::<TalkCandidates>().0.is_empty());
    }

    #[test]
    fn agents_look_on_their_slot_only() {
        // ten agents a tile apart: each has others within reach
        let at: Vec<(f32, f32)> = (0..10).map(|i| (5.0 + i as f32, 7.0)).collect();
        let (mut world, agents, mut schedule) = setup(
            SimConfig {
                perceive_every: 4,
                ..SimConfig::default()
            },
            &at,
        );
        world.resource_mut::<GameClock>().tick = 7;
        schedule.run(&mut world);
        let lookers: Vec<u32> = (0..10)
            .filter(|i| !seen_by(&world, agents[*i as usize]).is_empty())
            .collect();
        assert_eq!(lookers, vec![3, 7]);
        assert!(perceived(&mut world).iter().all(|p| p.0 == 3 || p.0 == 7));
        // 7 sees 6 and 8 at one tile (ties by index) then 5 at two
        assert_eq!(seen_by(&world, agents[7]), vec![5, 6, 8]);
        // from 3: 2 and 4, from 7: 6 and 8; the nearest, lower index, is chosen
        assert_eq!(
            world.resource::<TalkCandidates>().0,
            vec![(2, 3, 1.0), (6, 7, 1.0)]
        );
        world.resource_mut::<GameClock>().tick = 8;
        schedule.run(&mut world);
        let lookers: Vec<u32> = (0..10)
            .filter(|i| !seen_by(&world, agents[*i as usize]).is_empty())
            .collect();
        assert_eq!(lookers, vec![0, 3, 4, 7, 8]);
    }

    #[test]
    fn perception_events_can_be_turned_off() {
        let (mut world, _, mut schedule) = setup(
            SimConfig {
                emit_perception_events: false,
                ..every_tick()
            },
            &[(10.0, 7.0), (11.0, 7.0)],
        );
        schedule.run(&mut world);
        assert_eq!(perceptions(&world), 2);
        assert!(events(&mut world).is_empty());
    }

    fn seen(idx: u32, x: f32, y: f32) -> Seen {
        Seen {
            idx,
            x,
            y,
            doing: 0,
            location: 0,
            free: true,
        }
    }

    #[test]
    fn location_lookup_agrees_with_the_map() {
        let map = Arc::new(WorldMap::generate(60, 50, 12, 3));
        let mut g = SpatialGrid::default();
        g.index_locations(&map);
        let mut inside = 0;
        for y in 0..map.height + 2 {
            for x in 0..map.width + 2 {
                let t = Tile::new(x, y);
                assert_eq!(g.location_at(&map, t), map.location_at(t), "{t:?}");
                inside += usize::from(map.location_at(t).is_some());
            }
        }
        assert!(inside > 0);
        // another map is not looked up in this one's index
        let other = Arc::new(WorldMap::generate(60, 50, 5, 4));
        let t = other.locations[4].rect.center();
        assert_eq!(g.location_at(&other, t), Some(4));
    }

    #[test]
    fn near_finds_exactly_those_in_radius() {
        let mut g = SpatialGrid::default();
        let agents: Vec<Seen> = (0..400)
            .map(|i| seen(i, (i % 20) as f32 * 1.5, (i / 20) as f32 * 1.5))
            .collect();
        g.rebuild(40, 40, 4.0, agents.iter().copied());
        let (x, y, r) = (10.0, 12.0, 4.0);
        let mut found: Vec<u32> = Vec::new();
        g.near(x, y, r, |s, _| found.push(s.idx));
        found.sort();
        let mut expected: Vec<u32> = agents
            .iter()
            .filter(|s| ((s.x - x).powi(2) + (s.y - y).powi(2)).sqrt() <= r)
            .map(|s| s.idx)
            .collect();
        expected.sort();
        assert_eq!(found, expected);
        assert!(!found.is_empty());
    }
}
