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
#[expect(
    clippy::too_many_arguments,
    reason = "a bevy system takes what it touches as parameters"
)]
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::content::{AgentDef, LocationId, ScheduleBlock, Tile, WorldMap};
    use crate::world::components::{Facing, Override, Perception, Relationships};
    use crate::world::mind::RuleMind;
    use crate::world::testkit::{self, events, tick};

    const HOME: LocationId = 0;
    const BAKERY: LocationId = 2;

    fn block(activity: &str, location: LocationId, object: Option<&str>) -> ScheduleBlock {
        ScheduleBlock {
            days: 0x7f,
            start: 6 * 60,
            end: 14 * 60,
            activity: activity.into(),
            location,
            object: object.map(str::to_owned),
            priority: 6,
            flexible: false,
        }
    }

    fn def(id: &str, schedule: Vec<ScheduleBlock>) -> AgentDef {
        let mut d = testkit::def(id, "Keep the oven warm", schedule);
        d.home = HOME;
        d.start = HOME;
        d
    }

    /// A map of six locations and a world at 07:00 whose agents all have
    /// "bake" at the bakery (block 0) and a nap on the home's object (block 1).
    fn setup(agents: usize) -> (World, Arc<WorldMap>) {
        let map = Arc::new(WorldMap::generate(40, 30, 6, 1));
        let object = map.location(HOME).objects[0].name.clone();
        let defs = (0..agents)
            .map(|i| {
                def(
                    &format!("a{i}"),
                    vec![
                        block("bake", BAKERY, None),
                        block("nap", HOME, Some(&object)),
                    ],
                )
            })
            .collect();
        let config = SimConfig::default();
        let mut world = World::new();
        world.insert_resource(GameClock::new(
            config.tick_rate,
            config.game_minutes_per_second,
            7 * 60,
        ));
        world.insert_resource(WorldRng::new(3));
        world.insert_resource(Defs {
            agents: Arc::new(defs),
        });
        world.insert_resource(MapRes(map.clone()));
        world.insert_resource(MindRes(Arc::new(RuleMind)));
        world.insert_resource(config);
        world.insert_resource(Stats::default());
        world.insert_resource(Outbox::default());
        world.insert_resource(PathQueue::default());
        (world, map)
    }

    fn now(world: &World) -> u64 {
        world.resource::<GameClock>().minutes()
    }

    fn activity(world: &World, block: Option<u16>, location: LocationId) -> Activity {
        let now = now(world);
        Activity {
            block,
            override_reason: block.is_none().then_some(Override::FreeTime),
            location,
            since: now,
            until: now + 7 * 60,
            sleep: false,
        }
    }

    fn spawn(world: &mut World, idx: u32, at: Tile, activity: Activity) -> Entity {
        let now = now(world);
        world
            .spawn((
                AgentIdx(idx),
                Position::of(at),
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
                Needs::default(),
                Perception::default(),
                Talk::default(),
                Relationships::default(),
            ))
            .id()
    }

    fn plans() -> Schedule {
        let mut schedule = Schedule::default();
        schedule.add_systems((make_plans, follow_plans).chain());
        schedule
    }

    fn following() -> Schedule {
        let mut schedule = Schedule::default();
        schedule.add_systems(follow_plans);
        schedule
    }

    fn plan(world: &World, e: Entity) -> Plan {
        world.get::<Plan>(e).expect("plan").clone()
    }

    fn movement(world: &World, e: Entity) -> Movement {
        world.get::<Movement>(e).expect("movement").clone()
    }

    #[test]
    fn a_changed_activity_gets_a_plan_to_walk_there_and_do_it() {
        let (mut world, map) = setup(1);
        let start = map.location(HOME).walkable[0];
        let bake = activity(&world, Some(0), BAKERY);
        let until = bake.until;
        let ada = spawn(&mut world, 0, start, bake);
        let mut schedule = plans();
        schedule.run(&mut world);

        let p = plan(&world, ada);
        assert_eq!(
            (p.id, p.goal.as_str(), p.status, p.current, p.priority),
            (1, "bake", PlanStatus::Active, 0, 6)
        );
        assert_eq!(p.deadline, until);
        let Some(&Step::GoTo { location, tile }) = p.steps.first() else {
            panic!("the plan starts with a walk: {:?}", p.steps);
        };
        assert_eq!(location, BAKERY);
        assert!(map.location(BAKERY).walkable.contains(&tile), "{tile:?}");
        assert_eq!(p.steps[1..], [Step::Perform { until }]);
        assert_eq!(
            events(&mut world),
            vec![WorldEvent::PlanChanged {
                agent: 0,
                plan: 1,
                goal: "bake".into(),
            }]
        );
        // the walk starts: a goal, and one path request
        let m = movement(&world, ada);
        assert_eq!((m.goal, m.waiting), (Some(tile), true));
        assert_eq!(world.resource::<PathQueue>().len(), 1);

        // while the activity holds: no new plan, no new request
        for _ in 0..5 {
            tick(&mut world, &mut schedule);
        }
        assert_eq!(plan(&world, ada).id, 1);
        assert_eq!(plan(&world, ada).current, 0, "still walking");
        assert_eq!(world.resource::<PathQueue>().len(), 1);
        assert_eq!(world.resource::<Stats>().plans_made, 1);
        assert!(events(&mut world).is_empty());

        // a new activity: a new plan with the next id, to the named object
        world
            .get_mut::<Movement>(ada)
            .expect("movement")
            .path
            .push(Tile::new(9, 9));
        let nap = activity(&world, Some(1), HOME);
        *world.get_mut::<Activity>(ada).expect("activity") = nap;
        tick(&mut world, &mut schedule);
        let p = plan(&world, ada);
        let bed = map.location(HOME).objects[0].tile;
        assert_eq!((p.id, p.goal.as_str()), (2, "nap"));
        assert_eq!(
            p.steps[0],
            Step::GoTo {
                location: HOME,
                tile: bed
            }
        );
        let m = movement(&world, ada);
        assert_eq!((m.goal, m.waiting), (Some(bed), true));
        assert!(m.path.is_empty(), "the old path is dropped");
        assert_eq!(world.resource::<PathQueue>().len(), 2);
        assert_eq!(world.resource::<Stats>().plans_made, 2);
    }

    #[test]
    fn free_time_and_rest_are_planned_too() {
        let (mut world, _) = setup(2);
        let free = activity(&world, None, 4);
        let mut rest = activity(&world, None, HOME);
        rest.override_reason = Some(Override::Exhausted);
        let a = spawn(&mut world, 0, Tile::new(20, 7), free);
        let b = spawn(&mut world, 1, Tile::new(21, 7), rest);
        plans().run(&mut world);
        let (pa, pb) = (plan(&world, a), plan(&world, b));
        assert_eq!((pa.goal.as_str(), pa.priority), ("free time", 9));
        assert!(matches!(pa.steps[0], Step::GoTo { location: 4, .. }));
        assert_eq!(pb.goal, "resting at home");
        assert!(matches!(pb.steps[0], Step::GoTo { location: HOME, .. }));
        assert_eq!(world.resource::<Stats>().plans_made, 2);
    }

    #[test]
    fn standing_on_the_goal_ends_the_walk() {
        let (mut world, map) = setup(2);
        let bed = map.location(HOME).objects[0].tile;
        let far = map.location(BAKERY).walkable[0];
        let nap = activity(&world, Some(1), HOME);
        // one agent already on the bed, one far away
        let here = spawn(&mut world, 0, bed, nap.clone());
        let there = spawn(&mut world, 1, far, nap);
        let mut schedule = plans();
        schedule.run(&mut world);
        assert_eq!(movement(&world, here).goal, Some(bed));
        assert!(!movement(&world, here).waiting, "no search to stay put");
        assert_eq!(world.resource::<PathQueue>().len(), 1, "only the far one");

        tick(&mut world, &mut schedule);
        assert_eq!(plan(&world, here).current, 1);
        assert_eq!(plan(&world, here).step(), plan(&world, here).steps.last());
        assert_eq!(plan(&world, there).current, 0, "waiting for its path");

        // a path was found: still walking while tiles remain
        {
            let mut m = world.get_mut::<Movement>(there).expect("movement");
            m.waiting = false;
            m.path = vec![bed];
        }
        tick(&mut world, &mut schedule);
        assert_eq!(plan(&world, there).current, 0);
        // next to the bed with an empty path is not there yet either
        world
            .get_mut::<Movement>(there)
            .expect("movement")
            .path
            .clear();
        *world.get_mut::<Position>(there).expect("position") =
            Position::of(Tile::new(bed.x + 1, bed.y));
        tick(&mut world, &mut schedule);
        assert_eq!(plan(&world, there).current, 0);
        *world.get_mut::<Position>(there).expect("position") = Position::of(bed);
        tick(&mut world, &mut schedule);
        assert_eq!(plan(&world, there).current, 1);
        assert_eq!(world.resource::<PathQueue>().len(), 1, "never queued again");
    }

    #[test]
    fn an_unreachable_goal_is_given_up() {
        let (mut world, map) = setup(1);
        let bake = activity(&world, Some(0), BAKERY);
        let ada = spawn(&mut world, 0, map.location(HOME).walkable[0], bake);
        let mut schedule = plans();
        schedule.run(&mut world);
        {
            let mut m = world.get_mut::<Movement>(ada).expect("movement");
            m.waiting = false;
            m.unreachable = true;
        }
        tick(&mut world, &mut schedule);
        assert_eq!(plan(&world, ada).current, 1);
    }

    fn performing(world: &World, until: u64) -> Plan {
        Plan {
            id: 4,
            goal: "bake".into(),
            steps: vec![
                Step::GoTo {
                    location: BAKERY,
                    tile: Tile::new(20, 2),
                },
                Step::Perform { until },
            ],
            current: 1,
            status: PlanStatus::Active,
            priority: 5,
            deadline: until.max(now(world)),
        }
    }

    #[test]
    fn the_plan_is_done_when_the_activity_ends() {
        let (mut world, _) = setup(1);
        let until = now(&world) + 5;
        let bake = activity(&world, Some(0), BAKERY);
        let ada = spawn(&mut world, 0, Tile::new(20, 2), bake);
        *world.get_mut::<Plan>(ada).expect("plan") = performing(&world, until);
        let mut schedule = following();
        // ten ticks a game minute: the fifth minute starts at tick 50
        for _ in 0..49 {
            tick(&mut world, &mut schedule);
        }
        assert_eq!(now(&world), until - 1);
        assert_eq!(plan(&world, ada).current, 1);
        assert_eq!(plan(&world, ada).status, PlanStatus::Active);
        tick(&mut world, &mut schedule);
        tick(&mut world, &mut schedule);
        let p = plan(&world, ada);
        assert_eq!((p.current, p.status), (2, PlanStatus::Done));
        for _ in 0..20 {
            tick(&mut world, &mut schedule);
        }
        let p = plan(&world, ada);
        assert_eq!((p.current, p.status), (2, PlanStatus::Done));
        assert_eq!(movement(&world, ada).goal, None);
    }

    #[test]
    fn a_conversation_pauses_the_plan() {
        let (mut world, _) = setup(2);
        let bake = activity(&world, Some(0), BAKERY);
        let walker = spawn(&mut world, 0, Tile::new(20, 7), bake.clone());
        let worker = spawn(&mut world, 1, Tile::new(20, 2), bake);
        let walk = Plan {
            current: 0,
            ..performing(&world, now(&world) + 60)
        };
        *world.get_mut::<Plan>(walker).expect("plan") = walk;
        *world.get_mut::<Plan>(worker).expect("plan") = performing(&world, now(&world));
        for e in [walker, worker] {
            world.get_mut::<Talk>(e).expect("talk").conversation = Some(1);
        }
        let mut schedule = following();
        for _ in 0..30 {
            tick(&mut world, &mut schedule);
        }
        assert_eq!(plan(&world, walker).current, 0);
        assert_eq!(movement(&world, walker), Movement::default());
        assert!(world.resource::<PathQueue>().is_empty());
        assert_eq!(plan(&world, worker).current, 1);
        assert_eq!(plan(&world, worker).status, PlanStatus::Active);

        // the conversation ends: both carry on
        for e in [walker, worker] {
            world.get_mut::<Talk>(e).expect("talk").conversation = None;
        }
        tick(&mut world, &mut schedule);
        assert_eq!(movement(&world, walker).goal, Some(Tile::new(20, 2)));
        assert_eq!(world.resource::<PathQueue>().len(), 1);
        assert_eq!(plan(&world, worker).current, 2);
    }
}
