//! Walking: agents with a path step along it at the configured speed (tiles
//! per game minute), turning to face where they go; a tile that became
//! blocked sends the agent back to the path queue. Agents in a conversation
//! stand still. Touches `Position`, `Facing`, `Movement`, the queue, outbox.

use bevy_ecs::prelude::*;

use super::clock::GameClock;
use super::components::{AgentIdx, Facing, Movement, Position, Talk};
use super::events::{Outbox, WorldEvent};
use super::path::PathQueue;
use super::perception::SpatialGrid;
use super::{MapRes, SimConfig, Stats};
use hearth_content::{Tile, WorldMap};

#[expect(
    clippy::too_many_arguments,
    reason = "a bevy system takes what it touches as parameters"
)]
pub fn walk(
    clock: Res<GameClock>,
    map: Res<MapRes>,
    grid: Res<SpatialGrid>,
    config: Res<SimConfig>,
    mut queue: ResMut<PathQueue>,
    mut stats: ResMut<Stats>,
    mut outbox: ResMut<Outbox>,
    mut agents: Query<(
        Entity,
        &AgentIdx,
        &mut Position,
        &mut Facing,
        &mut Movement,
        &Talk,
    )>,
) {
    let step_len = config.walk_speed * clock.minutes_per_tick();
    for (entity, idx, mut position, mut facing, mut movement, talk) in &mut agents {
        if movement.path.is_empty() || talk.conversation.is_some() {
            continue;
        }
        let stride = step_along(
            &mut movement.path,
            (position.x, position.y),
            step_len,
            &map.0,
        );
        (position.x, position.y) = stride.to;
        if let Some(f) = stride.facing
            && *facing != f
        {
            *facing = f;
        }
        if stride.blocked {
            // the map changed under the path: search again
            movement.path.clear();
            movement.waiting = true;
            queue.push(entity);
            stats.path_blocked += 1;
        }
        if movement.path.is_empty() && !movement.waiting {
            stats.arrivals += 1;
            if config.emit_activity_events {
                outbox.push(
                    clock.tick,
                    WorldEvent::Arrived {
                        agent: idx.0,
                        location: grid.location_at(&map.0, position.tile()),
                    },
                );
            }
        }
    }
}

/// Where a walk along a path got to in one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stride {
    pub to: (f32, f32),
    /// The direction of the last step taken, if any.
    pub facing: Option<Facing>,
    /// The next tile of the path is no longer walkable (the map changed).
    pub blocked: bool,
}

/// Walks from `from` along `path` (next tile last; tiles reached are
/// popped) for at most `budget` tiles. Used by agents and characters alike.
pub fn step_along(path: &mut Vec<Tile>, from: (f32, f32), budget: f32, map: &WorldMap) -> Stride {
    let (mut x, mut y) = from;
    let mut budget = budget;
    let mut facing = None;
    while budget > 0.0 {
        let Some(&next) = path.last() else {
            break;
        };
        if !map.is_walkable(next) {
            return Stride {
                to: (x, y),
                facing,
                blocked: true,
            };
        }
        let (tx, ty) = (f32::from(next.x), f32::from(next.y));
        let (dx, dy) = (tx - x, ty - y);
        let dist = (dx * dx + dy * dy).sqrt();
        if let Some(f) = Facing::of_step(dx, dy) {
            facing = Some(f);
        }
        if dist <= budget {
            (x, y) = (tx, ty);
            budget -= dist;
            path.pop();
        } else {
            x += dx / dist * budget;
            y += dy / dist * budget;
            budget = 0.0;
        }
    }
    Stride {
        to: (x, y),
        facing,
        blocked: false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::components::{
        Activity, Needs, Override, Perception, Plan, PlanStatus, Relationships,
    };
    use crate::testkit::{events, tick};
    use hearth_content::{Tile, WorldMap};

    /// The street between the first two rows of buildings: open from x = 0 to 39.
    const STREET: u16 = 7;

    fn map() -> WorldMap {
        let map = WorldMap::generate(40, 30, 6, 1);
        assert!((0..40).all(|x| map.is_walkable(Tile::new(x, STREET))));
        map
    }

    fn setup(map: WorldMap) -> World {
        let config = SimConfig::default();
        let mut world = World::new();
        world.insert_resource(GameClock::new(
            config.tick_rate,
            config.game_minutes_per_second,
            7 * 60,
        ));
        world.insert_resource(MapRes(Arc::new(map)));
        world.insert_resource(config);
        world.insert_resource(PathQueue::default());
        world.insert_resource(SpatialGrid::default());
        world.insert_resource(Stats::default());
        world.insert_resource(Outbox::default());
        world
    }

    /// An agent at `from` with `tiles` still to walk, in walking order.
    fn spawn(world: &mut World, idx: u32, from: Tile, tiles: &[Tile]) -> Entity {
        let now = world.resource::<GameClock>().minutes();
        let mut path = tiles.to_vec();
        path.reverse();
        world
            .spawn((
                AgentIdx(idx),
                Position::of(from),
                Facing::default(),
                Activity {
                    block: None,
                    override_reason: Some(Override::FreeTime),
                    location: 0,
                    since: now,
                    until: now + 30,
                    sleep: false,
                },
                Plan {
                    id: 0,
                    goal: "arrive".into(),
                    steps: Vec::new(),
                    current: 0,
                    status: PlanStatus::Done,
                    priority: 1,
                    deadline: now,
                },
                Movement {
                    goal: tiles.last().copied(),
                    path,
                    waiting: false,
                    unreachable: false,
                },
                Needs::default(),
                Perception::default(),
                Talk::default(),
                Relationships::default(),
            ))
            .id()
    }

    fn walking() -> Schedule {
        let mut schedule = Schedule::default();
        schedule.add_systems(walk);
        schedule
    }

    fn position(world: &World, e: Entity) -> Position {
        *world.get::<Position>(e).expect("position")
    }

    fn street(xs: std::ops::RangeInclusive<u16>) -> Vec<Tile> {
        xs.map(|x| Tile::new(x, STREET)).collect()
    }

    #[test]
    fn agents_walk_their_speed_and_stop_on_the_last_tile() {
        let mut world = setup(map());
        let tiles = street(1..=10);
        let ada = spawn(&mut world, 0, Tile::new(0, STREET), &tiles);
        let mut schedule = walking();
        // 12 tiles a game minute at ten ticks a game minute
        let step = {
            let (config, clock) = (world.resource::<SimConfig>(), world.resource::<GameClock>());
            config.walk_speed * clock.minutes_per_tick()
        };
        assert!((step - 1.2).abs() < 1e-6);

        let mut before = position(&world, ada);
        for n in 1..=8 {
            tick(&mut world, &mut schedule);
            let now = position(&world, ada);
            assert!(
                (now.distance(&before) - step).abs() < 1e-4,
                "tick {n}: {now:?}"
            );
            assert_eq!(now.y, f32::from(STREET));
            assert_eq!(world.get::<Facing>(ada), Some(&Facing::E));
            // the tiles passed are gone; the next one is still ahead
            let m = world.get::<Movement>(ada).expect("movement");
            let passed = (now.x.floor() as usize).min(10);
            assert_eq!(m.path.len(), 10 - passed, "tick {n}");
            assert!(m.path.last().is_none_or(|t| f32::from(t.x) > now.x));
            before = now;
        }
        assert!(events(&mut world).is_empty(), "not there yet");
        // 9.6 tiles walked: the ninth tick ends exactly on the last tile
        tick(&mut world, &mut schedule);
        assert_eq!(position(&world, ada), Position::of(Tile::new(10, STREET)));
        assert!(
            world
                .get::<Movement>(ada)
                .expect("movement")
                .path
                .is_empty()
        );
        assert_eq!(
            events(&mut world),
            vec![WorldEvent::Arrived {
                agent: 0,
                location: None,
            }]
        );
        // and stays there, announced once
        for _ in 0..5 {
            tick(&mut world, &mut schedule);
        }
        assert_eq!(position(&world, ada), Position::of(Tile::new(10, STREET)));
        assert!(events(&mut world).is_empty());
        assert_eq!(world.resource::<Stats>().arrivals, 1);
    }

    #[test]
    fn agents_face_where_they_go() {
        let mut world = setup(map());
        let from = Tile::new(20, STREET);
        let west = spawn(&mut world, 0, from, &[Tile::new(19, STREET)]);
        let north = spawn(&mut world, 1, from, &[Tile::new(20, STREET - 1)]);
        let south_east = spawn(&mut world, 2, from, &[Tile::new(21, STREET + 1)]);
        // a corner: east, then south; after the turn it faces south
        let corner = spawn(
            &mut world,
            3,
            Tile::new(30, STREET - 1),
            &[Tile::new(31, STREET - 1), Tile::new(31, STREET)],
        );
        tick(&mut world, &mut walking());
        let facing = |e| *world.get::<Facing>(e).expect("facing");
        assert_eq!(facing(west), Facing::W);
        assert_eq!(facing(north), Facing::N);
        assert_eq!(facing(south_east), Facing::Se);
        assert_eq!(facing(corner), Facing::S);
        let p = position(&world, corner);
        assert_eq!(p.x, 31.0);
        assert!((p.y - (f32::from(STREET) - 0.8)).abs() < 1e-5, "{p:?}");
    }

    #[test]
    fn an_agent_in_a_conversation_stands_still() {
        let mut world = setup(map());
        let tiles = street(1..=5);
        let ada = spawn(&mut world, 0, Tile::new(0, STREET), &tiles);
        world.get_mut::<Talk>(ada).expect("talk").conversation = Some(3);
        let mut schedule = walking();
        for _ in 0..10 {
            tick(&mut world, &mut schedule);
        }
        assert_eq!(position(&world, ada), Position::of(Tile::new(0, STREET)));
        assert_eq!(world.get::<Movement>(ada).expect("movement").path.len(), 5);
        assert_eq!(world.get::<Facing>(ada), Some(&Facing::S));
        assert!(events(&mut world).is_empty());
        world.get_mut::<Talk>(ada).expect("talk").conversation = None;
        tick(&mut world, &mut schedule);
        assert!((position(&world, ada).x - 1.2).abs() < 1e-5);
    }

    #[test]
    fn a_blocked_tile_sends_the_agent_back_to_the_path_queue() {
        let mut map = map();
        let wall = Tile::new(3, STREET);
        map.set_walkable(wall, false);
        let mut world = setup(map);
        let ada = spawn(&mut world, 0, Tile::new(0, STREET), &street(1..=5));
        let bo = spawn(&mut world, 1, Tile::new(10, STREET), &street(11..=12));
        let mut schedule = walking();
        tick(&mut world, &mut schedule);
        assert!(world.resource::<PathQueue>().is_empty());
        // second tick: reaches (2, y) with budget left, then finds the wall
        tick(&mut world, &mut schedule);
        assert_eq!(position(&world, ada), Position::of(Tile::new(2, STREET)));
        let m = world.get::<Movement>(ada).expect("movement").clone();
        assert!(m.path.is_empty());
        assert!(m.waiting);
        assert_eq!(m.goal, Some(Tile::new(5, STREET)), "the goal is kept");
        assert_eq!(world.resource::<PathQueue>().len(), 1);
        assert_eq!(world.resource::<Stats>().path_blocked, 1);
        // not an arrival; only the other agent arrived
        assert_eq!(
            events(&mut world),
            vec![WorldEvent::Arrived {
                agent: 1,
                location: None,
            }]
        );
        // waiting for its new path: no further moves, no second request
        for _ in 0..5 {
            tick(&mut world, &mut schedule);
        }
        assert_eq!(position(&world, ada), Position::of(Tile::new(2, STREET)));
        assert_eq!(world.resource::<PathQueue>().len(), 1);
        assert_eq!(world.resource::<Stats>().path_blocked, 1);
        assert!(events(&mut world).is_empty());
        assert_eq!(position(&world, bo), Position::of(Tile::new(12, STREET)));
    }

    #[test]
    fn arriving_inside_a_location_names_it() {
        let map = map();
        let square = map.location(0).rect;
        let from = Tile::new(square.x + 1, square.y + 2);
        let to = Tile::new(square.x + 3, square.y + 2);
        let mut world = setup(map);
        spawn(&mut world, 0, from, &[Tile::new(from.x + 1, from.y), to]);
        let mut schedule = walking();
        tick(&mut world, &mut schedule);
        assert!(events(&mut world).is_empty());
        tick(&mut world, &mut schedule);
        assert_eq!(
            events(&mut world),
            vec![WorldEvent::Arrived {
                agent: 0,
                location: Some(0),
            }]
        );
    }
}
