//! Plans: when an agent's activity changes, the mind makes a plan for it;
//! every tick each agent follows its plan's current step (walk to a spot,
//! then perform the activity until it ends). An agent in a conversation
//! pauses its plan and resumes it afterwards. Agents with a language model
//! also ask it for their day's plan and for the steps of each activity, a
//! couple of hours at a time ([`ModelPlans`]), and may react to what they
//! perceive; they keep doing the activity while they wait. Touches `Plan`,
//! `Movement`, the path queue, the model plans and the outbox.

use bevy_ecs::prelude::*;

use super::clock::GameClock;
use super::components::{
    Activity, AgentIdx, Movement, Needs, Plan, PlanStatus, Position, Step, Talk,
};
use super::events::{Command, Outbox, PlanWanted, WorldEvent};
use super::mind::{AgentView, PlanRequest};
use super::path::PathQueue;
use super::rng::{Purpose, WorldRng};
use super::schedule::activity_label;
use super::{AgentIndex, Defs, MapRes, MindRes, SimConfig, Stats};

/// Activities shorter than this (minutes) are not broken into steps.
const MIN_STEPS_SPAN: u64 = 15;

/// Plans made with agents' models: which agents have one, the day plans
/// asked for and made, the steps asked for, the answers not yet applied,
/// and where a broken-down activity needs its next steps. Not saved with
/// checkpoints (a restarted agent asks again).
#[derive(Debug, Resource)]
pub struct ModelPlans {
    /// By agent index: whether it plans with a model.
    pub thinking: Vec<bool>,
    /// Minutes of an activity broken into steps per request.
    pub horizon: u64,
    /// By agent: the game day whose plan was asked for, and its items
    /// (empty until answered).
    pub days: std::collections::HashMap<u32, (u64, Vec<String>)>,
    /// Answers not yet applied ([`Command::DayPlan`], [`Command::Steps`],
    /// [`Command::React`]).
    pub inbox: Vec<Command>,
    /// By agent: (plan id, game minute) at which its activity needs its
    /// next steps.
    next: std::collections::HashMap<u32, (u64, u64)>,
    pub day_plans: u64,
    pub steps_asked: u64,
    pub steps_applied: u64,
    pub reactions: u64,
}

impl Default for ModelPlans {
    fn default() -> Self {
        Self {
            thinking: Vec::new(),
            horizon: 120,
            days: Default::default(),
            inbox: Vec::new(),
            next: Default::default(),
            day_plans: 0,
            steps_asked: 0,
            steps_applied: 0,
            reactions: 0,
        }
    }
}

impl ModelPlans {
    fn thinks(&self, agent: u32) -> bool {
        self.thinking.get(agent as usize).copied().unwrap_or(false)
    }

    /// Asks for the steps of `plan` from `from` (at most the horizon).
    #[expect(clippy::too_many_arguments, reason = "what one request carries")]
    fn ask_steps(
        &mut self,
        outbox: &mut Outbox,
        tick: u64,
        agent: u32,
        plan: &Plan,
        label: &str,
        location: &hearth_content::map::Location,
        from: u64,
        until: u64,
    ) {
        let to = until.min(from + self.horizon);
        if to < from + MIN_STEPS_SPAN {
            return;
        }
        self.steps_asked += 1;
        let day_plan = self
            .days
            .get(&agent)
            .map(|d| d.1.clone())
            .unwrap_or_default();
        outbox.push(
            tick,
            WorldEvent::PlanWanted(Box::new(PlanWanted::Steps {
                agent,
                plan: plan.id,
                activity: label.to_owned(),
                location: location.name.clone(),
                objects: location.objects.iter().map(|o| o.name.clone()).collect(),
                from,
                to,
                day_plan,
            })),
        );
    }
}

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
    mut models: ResMut<ModelPlans>,
    mut agents: Query<(&AgentIdx, &Activity, &Needs, &mut Plan), Changed<Activity>>,
) {
    let now = clock.minutes();
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
        if models.thinks(idx.0) {
            models.next.remove(&idx.0);
            let day = now / u64::from(hearth_content::DAY_MINUTES);
            if !activity.sleep && models.days.get(&idx.0).map(|d| d.0) != Some(day) {
                models.days.insert(idx.0, (day, Vec::new()));
                models.day_plans += 1;
                outbox.push(
                    clock.tick,
                    WorldEvent::PlanWanted(Box::new(PlanWanted::Day { agent: idx.0, day })),
                );
            }
            // sleep and free time are routine: never broken down
            if !activity.sleep && activity.block.is_some() {
                let location = map.0.location(activity.location);
                models.ask_steps(
                    &mut outbox,
                    clock.tick,
                    idx.0,
                    &plan,
                    label,
                    location,
                    now,
                    activity.until,
                );
            }
        }
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
            Some(Step::Perform { until } | Step::Do { until, .. }) => {
                if now >= until {
                    plan.current += 1;
                }
            }
            None => plan.status = PlanStatus::Done,
        }
    }
}

/// Applies what agents' models answered: day plans (kept as context and
/// announced), steps (replacing the activity's undivided `Perform` from the
/// answer's start, a couple of hours at a time, the rest asked for when
/// reached) and reactions (a step inserted now). Answers for a plan that
/// is no longer current are dropped.
pub fn apply_model_plans(
    clock: Res<GameClock>,
    defs: Res<Defs>,
    map: Res<MapRes>,
    index: Res<AgentIndex>,
    mut models: ResMut<ModelPlans>,
    mut outbox: ResMut<Outbox>,
    mut agents: Query<(&Activity, &mut Plan, &Talk)>,
) {
    if models.thinking.is_empty() {
        return;
    }
    let now = clock.minutes();
    for answer in std::mem::take(&mut models.inbox) {
        match answer {
            Command::DayPlan {
                agent,
                day,
                wake,
                items,
            } => {
                if let Some(d) = models.days.get_mut(&agent)
                    && d.0 == day
                    && d.1.is_empty()
                {
                    d.1.clone_from(&items);
                    outbox.push(
                        clock.tick,
                        WorldEvent::DayPlanned {
                            agent,
                            day,
                            wake,
                            items,
                        },
                    );
                }
            }
            Command::Steps {
                agent,
                plan: plan_id,
                from,
                steps,
            } => {
                let Some(&entity) = index.0.get(agent as usize) else {
                    continue;
                };
                let Ok((_, mut plan, _)) = agents.get_mut(entity) else {
                    continue;
                };
                if plan.id != plan_id || plan.status != PlanStatus::Active || steps.is_empty() {
                    continue;
                }
                // the undivided rest of the activity, at or after the current step
                let Some(p) = (plan.current..plan.steps.len())
                    .find(|&i| matches!(plan.steps[i], Step::Perform { .. }))
                else {
                    continue;
                };
                let Step::Perform { until } = plan.steps[p] else {
                    continue;
                };
                let mut t = from.max(now);
                let mut made = Vec::new();
                for (minutes, action) in steps {
                    if t >= until {
                        break;
                    }
                    t = (t + u64::from(minutes.clamp(1, 60))).min(until);
                    made.push(Step::Do { until: t, action });
                }
                if made.is_empty() {
                    continue;
                }
                if t < until {
                    // the rest, broken down when it is reached
                    made.push(Step::Perform { until });
                    models.next.insert(agent, (plan_id, t));
                }
                plan.steps.splice(p..=p, made);
                models.steps_applied += 1;
            }
            Command::React {
                agent,
                action,
                minutes,
            } => {
                let Some(&entity) = index.0.get(agent as usize) else {
                    continue;
                };
                let Ok((_, mut plan, talk)) = agents.get_mut(entity) else {
                    continue;
                };
                let performing =
                    matches!(plan.step(), Some(Step::Perform { .. } | Step::Do { .. }));
                if plan.status != PlanStatus::Active || !performing || talk.conversation.is_some() {
                    continue;
                }
                let until =
                    (now + u64::from(minutes.clamp(1, 120))).min(plan.deadline.max(now + 1));
                let at = plan.current;
                plan.steps.insert(at, Step::Do { until, action });
                models.reactions += 1;
            }
            _ => {}
        }
    }
    // activities whose broken-down steps have run out ask for more
    let due: Vec<(u32, u64)> = models
        .next
        .iter()
        .filter(|(_, (_, at))| *at <= now)
        .map(|(&a, &(plan, _))| (a, plan))
        .collect();
    for (agent, plan_id) in due {
        models.next.remove(&agent);
        let Some(&entity) = index.0.get(agent as usize) else {
            continue;
        };
        let Ok((activity, plan, _)) = agents.get(entity) else {
            continue;
        };
        if plan.id != plan_id || plan.status != PlanStatus::Active {
            continue;
        }
        // the undivided rest of the activity
        let rest = plan.steps[plan.current.min(plan.steps.len())..]
            .iter()
            .find_map(|s| match s {
                Step::Perform { until } => Some(*until),
                _ => None,
            });
        if let Some(until) = rest {
            let def = &defs.agents[agent as usize];
            let label = activity_label(def, activity);
            let location = map.0.location(activity.location);
            models.ask_steps(
                &mut outbox,
                clock.tick,
                agent,
                plan,
                label,
                location,
                now,
                until,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::components::{Facing, Override, Perception, Relationships};
    use crate::mind::RuleMind;
    use crate::testkit::{self, events, tick};
    use hearth_content::{AgentDef, LocationId, ScheduleBlock, Tile, WorldMap};

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
        world.insert_resource(ModelPlans::default());
        world.insert_resource(AgentIndex(Vec::new()));
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
        schedule.add_systems((make_plans, apply_model_plans, follow_plans).chain());
        schedule
    }

    #[test]
    fn a_model_plans_the_day_and_breaks_the_activity_into_steps_lazily() {
        let (mut world, map) = setup(1);
        world.resource_mut::<ModelPlans>().thinking = vec![true];
        world.resource_mut::<ModelPlans>().horizon = 60;
        let start = map.location(BAKERY).walkable[0];
        let bake = activity(&world, Some(0), BAKERY);
        let until = bake.until;
        let ada = spawn(&mut world, 0, start, bake);
        world.resource_mut::<AgentIndex>().0 = vec![ada];
        let mut schedule = plans();
        schedule.run(&mut world);
        let wanted: Vec<PlanWanted> = events(&mut world)
            .into_iter()
            .filter_map(|e| match e {
                WorldEvent::PlanWanted(w) => Some(*w),
                _ => None,
            })
            .collect();
        let t0 = now(&world);
        assert_eq!(wanted.len(), 2, "{wanted:?}");
        assert_eq!(wanted[0], PlanWanted::Day { agent: 0, day: 0 });
        let PlanWanted::Steps {
            plan: plan_id,
            from,
            to,
            ref activity,
            ..
        } = wanted[1]
        else {
            panic!("steps wanted: {wanted:?}");
        };
        assert_eq!(
            (plan_id, from, to, activity.as_str()),
            (1, t0, t0 + 60, "bake")
        );
        // the day plan is announced; the steps replace the undivided rest
        let mut models = world.resource_mut::<ModelPlans>();
        models.inbox.push(Command::DayPlan {
            agent: 0,
            day: 0,
            wake: "06:30".into(),
            items: vec!["07:00: bake bread".into()],
        });
        models.inbox.push(Command::Steps {
            agent: 0,
            plan: 1,
            from,
            steps: vec![
                (15, "light the oven".into()),
                (30, "knead the dough".into()),
                (15, "shape loaves".into()),
            ],
        });
        // a stale answer for another plan is ignored
        models.inbox.push(Command::Steps {
            agent: 0,
            plan: 9,
            from,
            steps: vec![(15, "nothing".into())],
        });
        tick(&mut world, &mut schedule);
        assert!(
            events(&mut world)
                .iter()
                .any(|e| matches!(e, WorldEvent::DayPlanned { items, .. } if items.len() == 1))
        );
        let p = plan(&world, ada);
        assert_eq!(
            p.steps[1..],
            [
                Step::Do {
                    until: t0 + 15,
                    action: "light the oven".into()
                },
                Step::Do {
                    until: t0 + 45,
                    action: "knead the dough".into()
                },
                Step::Do {
                    until: t0 + 60,
                    action: "shape loaves".into()
                },
                Step::Perform { until },
            ]
        );
        // a reaction is inserted at the current step (once it has arrived:
        // no reaction interrupts a walk)
        world.get_mut::<Plan>(ada).expect("plan").current = 1;
        world
            .resource_mut::<ModelPlans>()
            .inbox
            .push(Command::React {
                agent: 0,
                action: "greet the neighbour".into(),
                minutes: 10,
            });
        for _ in 0..3 {
            tick(&mut world, &mut schedule);
        }
        let p = plan(&world, ada);
        assert!(
            p.steps
                .iter()
                .any(|s| matches!(s, Step::Do { action, .. } if action == "greet the neighbour")),
            "{:?}",
            p.steps
        );
        // reaching the undivided rest asks for its steps
        let minutes_per_tick = world.resource::<GameClock>().minutes_per_tick();
        let ticks = (70.0 / minutes_per_tick).ceil() as usize;
        events(&mut world);
        for _ in 0..ticks {
            tick(&mut world, &mut schedule);
        }
        let more: Vec<PlanWanted> = events(&mut world)
            .into_iter()
            .filter_map(|e| match e {
                WorldEvent::PlanWanted(w) => Some(*w),
                _ => None,
            })
            .collect();
        assert!(
            matches!(more.as_slice(), [PlanWanted::Steps { plan: 1, from, .. }] if *from >= t0 + 60),
            "{more:?}"
        );
        assert_eq!(world.resource::<ModelPlans>().steps_applied, 1);
        assert_eq!(world.resource::<ModelPlans>().reactions, 1);
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
