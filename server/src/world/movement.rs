//! Walking: agents with a path step along it at the configured speed (tiles
//! per game minute), turning to face where they go; a tile that became
//! blocked sends the agent back to the path queue. Agents in a conversation
//! stand still. Touches `Position`, `Facing`, `Movement`, the queue, outbox.

use bevy_ecs::prelude::*;

use super::clock::GameClock;
use super::components::{AgentIdx, Facing, Movement, Position, Talk};
use super::events::{Outbox, WorldEvent};
use super::path::PathQueue;
use super::{MapRes, SimConfig, Stats};

#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn walk(
    clock: Res<GameClock>,
    map: Res<MapRes>,
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
        let mut budget = step_len;
        while budget > 0.0 {
            let Some(&next) = movement.path.last() else {
                break;
            };
            if !map.0.is_walkable(next) {
                // the map changed under the path: search again
                movement.path.clear();
                movement.waiting = true;
                queue.push(entity);
                stats.path_blocked += 1;
                break;
            }
            let (tx, ty) = (f32::from(next.x), f32::from(next.y));
            let (dx, dy) = (tx - position.x, ty - position.y);
            let dist = (dx * dx + dy * dy).sqrt();
            if let Some(f) = Facing::of_step(dx, dy)
                && *facing != f
            {
                *facing = f;
            }
            if dist <= budget {
                position.x = tx;
                position.y = ty;
                budget -= dist;
                movement.path.pop();
            } else {
                position.x += dx / dist * budget;
                position.y += dy / dist * budget;
                budget = 0.0;
            }
        }
        if movement.path.is_empty() && !movement.waiting {
            stats.arrivals += 1;
            if config.emit_activity_events {
                outbox.push(
                    clock.tick,
                    WorldEvent::Arrived {
                        agent: idx.0,
                        location: map.0.location_at(position.tile()),
                    },
                );
            }
        }
    }
}
