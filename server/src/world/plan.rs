//! Plans: when an agent's activity changes, the mind makes a plan for it;
//! every tick each agent follows its plan's current step (walk to a spot,
//! then perform the activity until it ends). An agent in a conversation
//! pauses its plan and resumes it afterwards. Touches `Plan`, `Movement`,
//! the path queue and the outbox.

use bevy_ecs::prelude::*;

use super::clock::GameClock;
use super::components::{
    Activity, AgentIdx, Movement, Needs, Plan, PlanStatus, Position, Step, Talk,
};
use super::events::{Outbox, WorldEvent};
use super::mind::{AgentView, PlanRequest};
use super::path::PathQueue;
use super::rng::{Purpose, WorldRng};
use super::schedule::activity_label;
use super::{Defs, MapRes, MindRes, SimConfig, Stats};

/// Makes a new plan for every agent whose activity changed.
#[allow(clippy::too_many_arguments)]
pub fn make_plans(
    clock: Res<GameClock>,
    rng: Res<WorldRng>,
    defs: Res<Defs>,
    map: Res<MapRes>,
    mind: Res<MindRes>,
    config: Res<SimConfig>,
    mut stats: ResMut<Stats>,
    mut outbox: ResMut<Outbox>,
    mut agents: Query<(&AgentIdx, &Activity, &Needs, &mut Plan), Changed<Activity>>,
) {
    for (idx, activity, needs, mut plan) in &mut agents {
        let def = &defs.agents[idx.0 as usize];
        let label = activity_label(def, activity);
        let block = activity.block.and_then(|b| def.schedule.get(b as usize));
        let view = AgentView {
            idx: idx.0,
            def,
            needs: *needs,
            activity: label,
            location: Some(activity.location),
        };
        let request = PlanRequest {
            activity: label,
            location: activity.location,
            object: block.and_then(|b| b.object.as_deref()),
            priority: block.map_or(9, |b| b.priority),
            until: activity.until,
            plan_id: plan.id + 1,
        };
        let mut stream = rng.stream(idx.0, clock.tick, Purpose::Spot);
        *plan = mind.0.plan(&view, &request, &map.0, &mut stream);
        stats.plans_made += 1;
        if config.emit_activity_events {
            outbox.push(
                clock.tick,
                WorldEvent::PlanChanged {
                    agent: idx.0,
                    plan: plan.id,
                    goal: plan.goal.clone(),
                },
            );
        }
    }
}

/// Advances every agent's plan by what happened: arrival ends a walk, the end
/// of the activity ends the plan.
#[allow(clippy::type_complexity)]
pub fn follow_plans(
    clock: Res<GameClock>,
    mut queue: ResMut<PathQueue>,
    mut agents: Query<(Entity, &mut Plan, &mut Movement, &Position, &Talk)>,
) {
    let now = clock.minutes();
    for (entity, mut plan, mut movement, position, talk) in &mut agents {
        if plan.status != PlanStatus::Active || talk.conversation.is_some() {
            continue;
        }
        match plan.step().cloned() {
            Some(Step::GoTo { tile, .. }) => {
                if movement.goal != Some(tile) {
                    movement.goal = Some(tile);
                    movement.path.clear();
                    movement.unreachable = false;
                    if position.tile() != tile {
                        movement.waiting = true;
                        queue.push(entity);
                    }
                } else if movement.unreachable || movement.arrived(position.tile()) {
                    plan.current += 1;
                }
            }
            Some(Step::Perform { until }) => {
                if now >= until {
                    plan.current += 1;
                }
            }
            None => plan.status = PlanStatus::Done,
        }
    }
}
