//! Relationships change with what agents live through together: each line of
//! a conversation nudges the listener's affection and trust towards the
//! speaker (and its mood), each finished conversation counts as an
//! interaction, and agents sharing an activity in one place warm to each
//! other once per game hour. Values stay within their ranges (affection
//! −100..100, trust 0..100). Touches `Relationships`, `Needs`, stats, outbox.

use bevy_ecs::prelude::*;

use super::clock::GameClock;
use super::components::{AgentIdx, Needs, Position, Relationships};
use super::events::{Outbox, WorldEvent};
use super::perception::SpatialGrid;
use super::{AgentIndex, SimConfig, Stats};

/// A change of how `from` feels about `to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelationDelta {
    pub from: u32,
    pub to: u32,
    pub affection: f32,
    pub trust: f32,
    /// A finished interaction: counted, dated and announced.
    pub interaction: bool,
}

/// Deltas of this tick, applied in order by [`relate`].
#[derive(Debug, Default, Resource)]
pub struct RelationDeltas(pub Vec<RelationDelta>);

/// Affection and trust gained per game hour of shared activity.
const SHARED_AFFECTION: f32 = 0.4;
const SHARED_TRUST: f32 = 0.2;
const SHARED_MAX_OTHERS: usize = 4;

#[allow(clippy::too_many_arguments)]
pub fn relate(
    clock: Res<GameClock>,
    config: Res<SimConfig>,
    index: Res<AgentIndex>,
    grid: Res<SpatialGrid>,
    mut deltas: ResMut<RelationDeltas>,
    mut stats: ResMut<Stats>,
    mut outbox: ResMut<Outbox>,
    mut agents: Query<(&AgentIdx, &Position, &mut Relationships, &mut Needs)>,
) {
    let now = clock.minutes();
    for d in deltas.0.drain(..) {
        let Ok((_, _, mut rels, mut needs)) = agents.get_mut(index.0[d.from as usize]) else {
            continue;
        };
        let r = rels.entry(d.to);
        r.affection = (r.affection + d.affection).clamp(-100.0, 100.0);
        r.trust = (r.trust + d.trust).clamp(0.0, 100.0);
        if d.interaction {
            r.interactions = r.interactions.saturating_add(1);
            r.last_interaction = Some(now);
            stats.relationship_changes += 1;
            let (affection, trust) = (r.affection, r.trust);
            outbox.push(
                clock.tick,
                WorldEvent::RelationshipChanged {
                    agent: d.from,
                    other: d.to,
                    affection,
                    trust,
                },
            );
        } else {
            needs.mood = (needs.mood + d.affection * 0.02).clamp(-1.0, 1.0);
            needs.arousal = (needs.arousal + d.affection.abs() * 0.02).clamp(0.0, 1.0);
            needs.cognitive_load = (needs.cognitive_load + 0.03).clamp(0.0, 1.0);
        }
    }

    // shared activity: once per game hour per agent, spread over the hour's ticks
    let ticks_per_hour = (3600 / clock.seconds_per_tick).max(1);
    let slot = clock.tick % ticks_per_hour;
    let mut near: Vec<(f32, u32)> = Vec::new();
    for (idx, position, mut rels, needs) in &mut agents {
        if u64::from(idx.0) % ticks_per_hour != slot || needs.sleeping {
            continue;
        }
        let mut mine = None;
        near.clear();
        grid.near(position.x, position.y, config.vision_radius, |s, d| {
            if s.idx == idx.0 {
                mine = Some((s.doing, s.location));
            } else {
                near.push((d, s.idx));
            }
        });
        let Some((doing, location)) = mine else {
            continue;
        };
        let mut others: Vec<u32> = Vec::new();
        grid.near(position.x, position.y, config.vision_radius, |s, _| {
            if s.idx != idx.0 && s.doing == doing && s.location == location && s.free {
                others.push(s.idx);
            }
        });
        others.sort_unstable();
        for other in others.into_iter().take(SHARED_MAX_OTHERS) {
            let r = rels.entry(other);
            r.affection = (r.affection + SHARED_AFFECTION).clamp(-100.0, 100.0);
            r.trust = (r.trust + SHARED_TRUST).clamp(0.0, 100.0);
            stats.shared_activity += 1;
        }
    }
}
