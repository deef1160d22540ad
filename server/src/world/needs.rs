//! Needs: energy drains while awake (faster in conversation) and recovers in
//! sleep; mood drifts back to the agent's temperament and sinks when tired;
//! arousal and cognitive load settle with quiet. An agent sleeps when its
//! activity is sleep and it has reached its spot. Low energy biases the
//! schedule (see `schedule`: an exhausted agent goes home). Touches `Needs`,
//! stats and the outbox.

use bevy_ecs::prelude::*;

use super::clock::GameClock;
use super::components::{Activity, AgentIdx, Needs, Plan, Step, Talk};
use super::events::{Outbox, WorldEvent};
use super::schedule::{activity_label, is_sleep};
use super::{Defs, SimConfig};

/// Energy per game minute.
const DRAIN_AWAKE: f32 = 0.0008;
const DRAIN_TALKING: f32 = 0.0004;
const RECOVER_ASLEEP: f32 = 0.0017;

#[allow(clippy::too_many_arguments)]
pub fn update_needs(
    clock: Res<GameClock>,
    defs: Res<Defs>,
    config: Res<SimConfig>,
    mut outbox: ResMut<Outbox>,
    mut agents: Query<(&AgentIdx, &Activity, &Plan, &Talk, &mut Needs)>,
) {
    let dt = clock.minutes_per_tick();
    for (idx, activity, plan, talk, mut needs) in &mut agents {
        let def = &defs.agents[idx.0 as usize];
        let performing = matches!(plan.step(), Some(Step::Perform { .. }));
        let asleep = performing && talk.conversation.is_none() && is_sleep(activity_label(def, activity));
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
        let p = &def.file.traits.personality;
        if asleep {
            n.energy += RECOVER_ASLEEP * dt;
        } else {
            n.energy -= (DRAIN_AWAKE + if talk.conversation.is_some() { DRAIN_TALKING } else { 0.0 }) * dt;
        }
        let temperament = 0.3 * (1.0 - p.neuroticism) - 0.05 + 0.1 * (p.extraversion - 0.5);
        n.mood += (temperament - n.mood) * 0.01 * dt;
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
