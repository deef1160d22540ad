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

#[allow(clippy::too_many_arguments)]
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
    candidates.0.clear();
    let every = u64::from(config.perceive_every.max(1));
    let slot = clock.tick % every;
    let now = clock.minutes();
    let mut nearest: Vec<(f32, Seen)> = Vec::with_capacity(16);
    for (idx, position, needs, talk, mut perception) in &mut agents {
        if u64::from(idx.0) % every != slot || needs.sleeping {
            continue;
        }
        // keep only the nearest few while scanning (insertion into a short sorted
        // list): a crowded room holds dozens, and attention takes three
        let k = config.attention;
        nearest.clear();
        grid.near(position.x, position.y, config.vision_radius, |s, d| {
            if s.idx == idx.0 || k == 0 {
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
            continue;
        }
        let free = talk.conversation.is_none();
        // forget what is older than the memory window
        let horizon = now.saturating_sub(u64::from(config.repeat_window_minutes));
        if perception.recent.iter().any(|r| r.2 < horizon) {
            perception.recent.retain(|r| r.2 >= horizon);
        }
        // the nearest free agent within reach is who one would talk to
        if free
            && let Some((d, other)) = nearest
                .iter()
                .find(|(d, o)| o.free && *d <= config.talk_radius)
        {
            candidates.0.push((idx.0, other.idx, *d));
        }
        for (d, other) in &nearest {
            if perception
                .recent
                .iter()
                .any(|r| r.0 == other.idx && r.1 == other.doing)
            {
                continue;
            }
            perception.recent.push((other.idx, other.doing, now));
            stats.perceptions += 1;
            if config.emit_perception_events {
                let def = &defs.agents[other.idx as usize];
                let block = (other.doing >> 8) as u16;
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
                        other: other.idx,
                        activity: label.to_owned(),
                        location: map.0.location_at(position.tile()),
                        distance: *d,
                    },
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
