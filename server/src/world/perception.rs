//! Perception: a grid hash of every agent's position, rebuilt each tick, lets
//! an agent find the others within its vision radius cheaply. Each agent looks
//! once per `perceive_every` ticks (spread over the ticks), attends to the
//! nearest few (Generative Agents: 4 tiles, 3 nearest), and ignores what it
//! perceived recently (the same agent doing the same thing). Perceptions are
//! events, and those close enough are conversation candidates. Touches
//! `Perception`, the grid, candidates, stats and the outbox.

use bevy_ecs::prelude::*;

use super::clock::GameClock;
use super::components::{Activity, AgentIdx, Needs, Perception, Position, Talk};
use super::events::{Outbox, WorldEvent};
use super::{Defs, MapRes, SimConfig, Stats};
use crate::content::LocationId;

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

/// Agents bucketed by square cells of `cell` tiles (counting sort, rebuilt
/// each tick: O(agents + cells), no allocation once warm).
#[derive(Debug, Default, Resource)]
pub struct SpatialGrid {
    cell: f32,
    cols: usize,
    rows: usize,
    /// `starts[c]..starts[c + 1]` indexes `items` for cell `c`.
    starts: Vec<u32>,
    items: Vec<Seen>,
    scratch: Vec<(usize, Seen)>,
}

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
        self.scratch.clear();
        for s in agents {
            let c = self.cell_of(s.x, s.y);
            self.scratch.push((c, s));
        }
        self.starts.clear();
        self.starts.resize(cells + 1, 0);
        for (c, _) in &self.scratch {
            self.starts[c + 1] += 1;
        }
        for i in 0..cells {
            self.starts[i + 1] += self.starts[i];
        }
        self.items.clear();
        self.items.resize(
            self.scratch.len(),
            Seen {
                idx: 0,
                x: 0.0,
                y: 0.0,
                doing: 0,
                location: 0,
                free: false,
            },
        );
        let mut fill = self.starts.clone();
        for (c, s) in &self.scratch {
            self.items[fill[*c] as usize] = *s;
            fill[*c] += 1;
        }
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

/// Rebuilds the grid from every agent's position.
pub fn index_positions(
    map: Res<MapRes>,
    config: Res<SimConfig>,
    mut grid: ResMut<SpatialGrid>,
    agents: Query<(&AgentIdx, &Position, &Activity, &Needs, &Talk)>,
) {
    let seen = agents.iter().map(|(idx, p, a, n, t)| Seen {
        idx: idx.0,
        x: p.x,
        y: p.y,
        doing: packed(a),
        location: a.location,
        free: !n.sleeping && t.conversation.is_none(),
    });
    grid.rebuild(map.0.width, map.0.height, config.vision_radius, seen);
}

/// Looks around for every agent due this tick. The looking runs in parallel
/// (each agent writes only its own `Perception`); what it found is then read
/// back in query order, so candidates, events and counts are the same
/// whatever the thread count.
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
    mut agents: Query<(&AgentIdx, &Position, &Needs, &Talk, &mut Perception)>,
) {
    // measured (BENCHMARKS.md): on 2 cores the parallel pass pays off from
    // tens of thousands of agents and costs more than it saves below
    let parallel = config.parallel && grid.len() >= PARALLEL_MIN_AGENTS;
    if parallel {
        bevy_tasks::ComputeTaskPool::get_or_init(bevy_tasks::TaskPool::default);
    }
    candidates.0.clear();
    let every = u64::from(config.perceive_every.max(1));
    let slot = clock.tick % every;
    let now = clock.minutes();
    let due =
        move |idx: &AgentIdx, needs: &Needs| u64::from(idx.0) % every == slot && !needs.sleeping;
    let grid: &SpatialGrid = &grid;
    let config: &SimConfig = &config;

    if parallel {
        agents.par_iter_mut().for_each_init(
            || Vec::<(f32, Seen)>::with_capacity(8),
            |nearest, (idx, position, needs, talk, mut perception)| {
                if due(idx, needs) {
                    look(
                        grid,
                        config,
                        now,
                        idx.0,
                        position,
                        talk,
                        nearest,
                        &mut perception,
                    );
                }
            },
        );
    } else {
        let mut nearest = Vec::with_capacity(8);
        for (idx, position, needs, talk, mut perception) in &mut agents {
            if due(idx, needs) {
                look(
                    grid,
                    config,
                    now,
                    idx.0,
                    position,
                    talk,
                    &mut nearest,
                    &mut perception,
                );
            }
        }
    }

    for (idx, position, needs, _, perception) in &agents {
        if !due(idx, needs) {
            continue;
        }
        if let Some((other, d)) = perception.reach {
            candidates.0.push((idx.0, other, d));
        }
        stats.perceptions += perception.fresh.len() as u64;
        if !config.emit_perception_events {
            continue;
        }
        for &(other, doing, distance) in &perception.fresh {
            let def = &defs.agents[other as usize];
            let block = (doing >> 8) as u16;
            let label = if block == u16::MAX {
                "free time"
            } else {
                def.schedule
                    .get(block as usize)
                    .map_or("idle", |b| b.activity.as_str())
            };
            outbox.push(
                clock.tick,
                WorldEvent::Perceived {
                    agent: idx.0,
                    other,
                    activity: label.to_owned(),
                    location: map.0.location_at(position.tile()),
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

/// One agent's look around: the nearest few within the vision radius, those
/// not perceived recently recorded as fresh, and the nearest free agent in
/// talking reach.
#[expect(
    clippy::too_many_arguments,
    reason = "the pieces of one agent's look, borrowed apart"
)]
fn look(
    grid: &SpatialGrid,
    config: &SimConfig,
    now: u64,
    me: u32,
    position: &Position,
    talk: &Talk,
    nearest: &mut Vec<(f32, Seen)>,
    perception: &mut Perception,
) {
    perception.fresh.clear();
    perception.reach = None;
    // keep only the nearest few while scanning (insertion into a short sorted
    // list): a crowded room holds dozens, and attention takes three
    let k = config.attention;
    nearest.clear();
    grid.near(position.x, position.y, config.vision_radius, |s, d| {
        if s.idx == me || k == 0 {
            return;
        }
        // ties by agent so the result never depends on the grid's order
        let closer = |e: &(f32, Seen)| e.0 < d || (e.0 == d && e.1.idx < s.idx);
        let at = nearest.iter().take_while(|e| closer(e)).count();
        if at < k {
            if nearest.len() == k {
                nearest.pop();
            }
            nearest.insert(at, (d, *s));
        }
    });
    if nearest.is_empty() {
        return;
    }
    // forget what is older than the memory window
    let horizon = now.saturating_sub(u64::from(config.repeat_window_minutes));
    if perception.recent.iter().any(|r| r.2 < horizon) {
        perception.recent.retain(|r| r.2 >= horizon);
    }
    // the nearest free agent within reach is who one would talk to
    if talk.conversation.is_none() {
        perception.reach = nearest
            .iter()
            .find(|(d, o)| o.free && *d <= config.talk_radius)
            .map(|(d, o)| (o.idx, *d));
    }
    for (d, other) in nearest.iter() {
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
    use crate::content::{AgentDef, WorldMap};
    use crate::world::testkit::{self, events};

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
