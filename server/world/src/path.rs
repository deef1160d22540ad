//! Path finding: A* over the map's walkable grid (the `pathfinding` crate),
//! 8-way moves without cutting corners. Requests wait in a FIFO queue and at
//! most `path_budget` searches run per tick, so a crowd changing activity at
//! once spreads its searches over several ticks instead of stalling one; the
//! queue is first come, first served, so no agent starves. A found path is
//! kept until the goal changes or a tile on it becomes blocked. Touches
//! `Movement`, the queue and stats.

use std::collections::VecDeque;

use bevy_ecs::prelude::*;
use pathfinding::prelude::astar;

use super::components::{Movement, Position};
use super::{MapRes, SimConfig, Stats};
use hearth_content::{Tile, WorldMap};

/// Agents waiting for a path search, oldest first.
#[derive(Debug, Default, Resource)]
pub struct PathQueue {
    queue: VecDeque<Entity>,
}

impl PathQueue {
    pub fn push(&mut self, entity: Entity) {
        self.queue.push_back(entity);
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The waiting agents, in turn order.
    pub fn entities(&self) -> impl Iterator<Item = Entity> + '_ {
        self.queue.iter().copied()
    }

    /// Replaces the queue (a world restored from a checkpoint).
    pub fn replace(&mut self, entities: impl IntoIterator<Item = Entity>) {
        self.queue = entities.into_iter().collect();
    }
}

const STRAIGHT: u32 = 10;
const DIAGONAL: u32 = 14;

fn successors(map: &WorldMap, t: Tile) -> impl Iterator<Item = (Tile, u32)> + '_ {
    const STEPS: [(i32, i32); 8] = [
        (1, 0),
        (-1, 0),
        (0, 1),
        (0, -1),
        (1, 1),
        (1, -1),
        (-1, 1),
        (-1, -1),
    ];
    STEPS.iter().filter_map(move |&(dx, dy)| {
        let nx = i32::from(t.x) + dx;
        let ny = i32::from(t.y) + dy;
        if nx < 0 || ny < 0 {
            return None;
        }
        let n = Tile::new(nx as u16, ny as u16);
        if !map.is_walkable(n) {
            return None;
        }
        if dx != 0 && dy != 0 {
            // no squeezing diagonally between two walls
            let side_a = Tile::new(nx as u16, t.y);
            let side_b = Tile::new(t.x, ny as u16);
            if !map.is_walkable(side_a) || !map.is_walkable(side_b) {
                return None;
            }
            return Some((n, DIAGONAL));
        }
        Some((n, STRAIGHT))
    })
}

/// Octile distance: admissible for the costs above.
fn heuristic(a: Tile, b: Tile) -> u32 {
    let dx = u32::from(a.x.abs_diff(b.x));
    let dy = u32::from(a.y.abs_diff(b.y));
    STRAIGHT * dx.max(dy) + (DIAGONAL - STRAIGHT) * dx.min(dy)
}

/// The tiles from `from` (excluded) to `to` (included), or `None` when `to`
/// cannot be reached.
pub fn find_path(map: &WorldMap, from: Tile, to: Tile) -> Option<Vec<Tile>> {
    if !map.is_walkable(to) {
        return None;
    }
    if from == to {
        return Some(Vec::new());
    }
    let (path, _cost) = astar(
        &from,
        |t| successors(map, *t),
        |t| heuristic(*t, to),
        |t| *t == to,
    )?;
    Some(path.into_iter().skip(1).collect())
}

/// Runs up to `path_budget` queued searches.
pub fn search_paths(
    mut queue: ResMut<PathQueue>,
    map: Res<MapRes>,
    config: Res<SimConfig>,
    mut stats: ResMut<Stats>,
    mut agents: Query<(&Position, &mut Movement)>,
) {
    let mut done = 0;
    while done < config.path_budget {
        let Some(entity) = queue.queue.pop_front() else {
            break;
        };
        let Ok((position, mut movement)) = agents.get_mut(entity) else {
            continue;
        };
        let Some(goal) = movement.goal.filter(|_| movement.waiting) else {
            continue;
        };
        done += 1;
        stats.path_searches += 1;
        // an agent standing off the grid (spawned in a wall, map edited) walks from the nearest free tile
        let from = position.tile();
        match find_path(&map.0, from, goal) {
            Some(mut path) => {
                path.reverse();
                movement.path = path;
                movement.unreachable = false;
            }
            None => {
                stats.path_failures += 1;
                movement.path.clear();
                movement.unreachable = true;
            }
        }
        movement.waiting = false;
    }
    stats.path_queue_max = stats.path_queue_max.max(queue.len() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_content::map::WorldMap;

    #[test]
    fn paths_go_around_walls_through_doors() {
        let map = WorldMap::generate(40, 30, 6, 1);
        let home = map.location(0);
        let other = map.location(3);
        let from = home.walkable[0];
        let to = other.walkable[other.walkable.len() - 1];
        let path = find_path(&map, from, to).expect("connected");
        assert_eq!(path.last(), Some(&to));
        let mut prev = from;
        for t in &path {
            assert!(map.is_walkable(*t));
            assert!(prev.distance(*t) == 1, "steps are adjacent");
            prev = *t;
        }
    }

    #[test]
    fn unreachable_and_trivial_goals() {
        let mut map = WorldMap::generate(40, 30, 2, 1);
        let t = map.location(0).walkable[0];
        assert_eq!(find_path(&map, t, t), Some(vec![]));
        map.set_walkable(Tile::new(39, 29), false);
        assert_eq!(find_path(&map, t, Tile::new(39, 29)), None);
    }

    #[test]
    fn the_budget_bounds_searches_per_tick_and_the_queue_is_fifo() {
        let map = WorldMap::generate(60, 40, 12, 3);
        let mut world = World::new();
        let goal = map.location(5).walkable[0];
        let start = map.location(0).walkable[0];
        world.insert_resource(MapRes(std::sync::Arc::new(map)));
        world.insert_resource(SimConfig {
            path_budget: 3,
            ..SimConfig::default()
        });
        world.insert_resource(Stats::default());
        let mut queue = PathQueue::default();
        let entities: Vec<Entity> = (0..7)
            .map(|_| {
                world
                    .spawn((
                        Position::of(start),
                        Movement {
                            goal: Some(goal),
                            waiting: true,
                            ..Movement::default()
                        },
                    ))
                    .id()
            })
            .collect();
        for e in &entities {
            queue.push(*e);
        }
        world.insert_resource(queue);
        let mut schedule = Schedule::default();
        schedule.add_systems(search_paths);
        schedule.run(&mut world);
        let served: Vec<bool> = entities
            .iter()
            .map(|e| !world.get::<Movement>(*e).expect("m").waiting)
            .collect();
        assert_eq!(served, vec![true, true, true, false, false, false, false]);
        schedule.run(&mut world);
        schedule.run(&mut world);
        assert!(
            entities
                .iter()
                .all(|e| !world.get::<Movement>(*e).expect("m").waiting)
        );
        assert_eq!(world.resource::<Stats>().path_searches, 7);
    }
}
