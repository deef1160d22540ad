//! Fixtures shared by the systems' unit tests: a minimal agent definition and
//! an agent's full set of components. Compiled for tests only.

use bevy_ecs::prelude::{Bundle, Schedule, World};

use super::clock::GameClock;
use super::components::{
    Activity, AgentIdx, Facing, Movement, Needs, Perception, Plan, PlanStatus, Position,
    Relationships, Talk,
};
use super::events::{Outbox, WorldEvent};
use hearth_content::agent::{AgentFile, Goals, Traits};
use hearth_content::{AgentDef, LocationId, ScheduleBlock};

/// The location the fixtures' agents work at.
pub const WORKPLACE: LocationId = 2;

/// An agent named `id` with default traits, living at location 0.
pub fn def(id: &str, primary_goal: &str, schedule: Vec<ScheduleBlock>) -> AgentDef {
    AgentDef {
        file: AgentFile {
            schema: None,
            version: 1,
            id: id.into(),
            name: id.into(),
            age: 30,
            occupation: String::new(),
            constitution: String::new(),
            background: String::new(),
            traits: Traits::default(),
            likes: vec![],
            dislikes: vec![],
            goals: Goals {
                primary: primary_goal.into(),
                secondary: vec![],
            },
            home: "home".into(),
            start_location: "home".into(),
            schedule: vec![],
            relationships: vec![],
            memories: vec![],
            llm: None,
        },
        home: 0,
        start: 0,
        schedule,
    }
}

/// Daily entries 06:00–14:00 at [`WORKPLACE`], one per activity.
pub fn working(activities: &[&str]) -> Vec<ScheduleBlock> {
    activities
        .iter()
        .map(|a| ScheduleBlock {
            days: 0x7f,
            start: 6 * 60,
            end: 14 * 60,
            activity: (*a).into(),
            location: WORKPLACE,
            object: None,
            priority: 5,
            flexible: false,
        })
        .collect()
}

/// Doing schedule entry 0 at [`WORKPLACE`] since `now`, for seven hours.
pub fn at_work(now: u64) -> Activity {
    Activity {
        block: Some(0),
        override_reason: None,
        location: WORKPLACE,
        since: now,
        until: now + 7 * 60,
        sleep: false,
    }
}

/// Every component of agent `idx` standing at (x, y), free, with no plan.
pub fn agent(idx: u32, x: f32, y: f32, activity: Activity, needs: Needs) -> impl Bundle {
    let now = activity.since;
    (
        AgentIdx(idx),
        Position { x, y },
        Facing::default(),
        activity,
        Plan {
            id: 0,
            goal: "arrive".into(),
            steps: Vec::new(),
            current: 0,
            status: PlanStatus::Done,
            priority: 1,
            deadline: now,
        },
        Movement::default(),
        needs,
        Perception::default(),
        Talk::default(),
        Relationships::default(),
    )
}

/// Advances the clock one tick and runs `schedule`.
pub fn tick(world: &mut World, schedule: &mut Schedule) {
    let mut clock = world.resource_mut::<GameClock>();
    clock.tick += 1;
    clock.seconds += clock.seconds_per_tick;
    schedule.run(world);
}

/// The events emitted since the last call.
pub fn events(world: &mut World) -> Vec<WorldEvent> {
    world
        .resource_mut::<Outbox>()
        .drain()
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}
