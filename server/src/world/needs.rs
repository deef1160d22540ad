//! Needs: energy drains while awake (faster in conversation) and recovers in
//! sleep; mood drifts back to the agent's temperament and sinks when tired;
//! arousal and cognitive load settle with quiet. An agent sleeps when its
//! activity is sleep and it has reached its spot. Low energy biases the
//! schedule (see `schedule`: an exhausted agent goes home). Each agent is
//! updated once per game minute, spread over the minute's ticks. Touches
//! `Needs` and the outbox.

use bevy_ecs::prelude::*;

use super::SimConfig;
use super::clock::GameClock;
use super::components::{Activity, AgentIdx, Needs, Plan, Step, Talk};
use super::events::{Outbox, WorldEvent};

/// Energy per game minute.
const DRAIN_AWAKE: f32 = 0.0008;
const DRAIN_TALKING: f32 = 0.0004;
const RECOVER_ASLEEP: f32 = 0.0017;

pub fn update_needs(
    clock: Res<GameClock>,
    config: Res<SimConfig>,
    mut outbox: ResMut<Outbox>,
    mut agents: Query<(&AgentIdx, &Activity, &Plan, &Talk, &mut Needs)>,
) {
    let ticks_per_minute = (60 / clock.seconds_per_tick).max(1);
    let slot = clock.tick % ticks_per_minute;
    // each agent's share of the minute, whatever the tick rate
    let dt = clock.minutes_per_tick() * ticks_per_minute as f32;
    for (idx, activity, plan, talk, mut needs) in &mut agents {
        if u64::from(idx.0) % ticks_per_minute != slot {
            continue;
        }
        let performing = matches!(plan.step(), Some(Step::Perform { .. }));
        let asleep = performing && talk.conversation.is_none() && activity.sleep;
        let n = &mut *needs;
        if asleep != n.sleeping {
            n.sleeping = asleep;
            if config.emit_activity_events {
                let event = if asleep {
                    WorldEvent::FellAsleep { agent: idx.0 }
                } else {
                    WorldEvent::Woke { agent: idx.0 }
                };
                outbox.push(clock.tick, event);
            }
        }
        if asleep {
            n.energy += RECOVER_ASLEEP * dt;
        } else {
            n.energy -= (DRAIN_AWAKE
                + if talk.conversation.is_some() {
                    DRAIN_TALKING
                } else {
                    0.0
                })
                * dt;
        }
        n.mood += (n.baseline - n.mood) * 0.01 * dt;
        if n.energy < 0.25 {
            n.mood -= 0.002 * dt;
        }
        n.arousal += (0.2 - n.arousal) * 0.02 * dt;
        if talk.conversation.is_none() {
            n.cognitive_load -= 0.01 * dt;
        }
        n.energy = n.energy.clamp(0.0, 1.0);
        n.mood = n.mood.clamp(-1.0, 1.0);
        n.arousal = n.arousal.clamp(0.0, 1.0);
        n.cognitive_load = n.cognitive_load.clamp(0.0, 1.0);
    }
}
