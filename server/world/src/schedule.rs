//! Which activity each agent should be doing now: the schedule entry that
//! covers the game time and weekday (highest priority wins; flexible entries
//! shift by up to half an hour a day), or a need that overrides it (an
//! exhausted agent goes home), or free time. Agents are checked once per game
//! minute, spread over the minute's ticks. Touches `Activity` and the outbox.

use bevy_ecs::prelude::*;

use super::clock::GameClock;
use super::components::{Activity, AgentIdx, Needs, Override};
use super::events::{Outbox, WorldEvent};
use super::rng::{Purpose, WorldRng};
use super::{Defs, SimConfig, Stats};
use hearth_content::{AgentDef, DAY_MINUTES};

/// Energy below which an agent abandons its schedule to rest at home.
pub const EXHAUSTED: f32 = 0.12;
/// Energy at which an exhausted agent returns to its schedule.
pub const RECOVERED: f32 = 0.35;

/// How far a flexible entry moves on a given day, in minutes (−30..=30, by 5).
pub fn flexible_shift(rng: &WorldRng, agent: u32, day: u64, block: usize) -> i32 {
    let v = rng.value(agent, day * 64 + block as u64, Purpose::Flexible);
    (v % 13) as i32 * 5 - 30
}

/// The activity `def` should be doing at `minute_of_day` of `weekday` on `day`.
/// Returns `(block index, until minute-of-day offset in minutes from now)`.
pub fn due_block(
    def: &AgentDef,
    rng: &WorldRng,
    agent: u32,
    day: u64,
    weekday: u8,
    minute: u16,
) -> Option<(usize, u16)> {
    let mut best: Option<(usize, u16, (u8, bool, u16))> = None;
    for (i, b) in def.schedule.iter().enumerate() {
        let shift = if b.flexible {
            flexible_shift(rng, agent, day, i)
        } else {
            0
        };
        // shifting the clock may cross midnight: then it is the other day's entry
        let raw = i32::from(minute) - shift;
        let day_len = i32::from(DAY_MINUTES);
        let (wd, m) = if raw < 0 {
            ((weekday + 6) % 7, (raw + day_len) as u16)
        } else if raw >= day_len {
            ((weekday + 1) % 7, (raw - day_len) as u16)
        } else {
            (weekday, raw as u16)
        };
        if !b.covers(wd, m) {
            continue;
        }
        let end = if b.end == DAY_MINUTES {
            DAY_MINUTES
        } else {
            b.end
        };
        let left = if b.start < b.end || m < end {
            end.saturating_sub(m)
        } else {
            DAY_MINUTES - m + end
        };
        // priority first, then fixed before flexible, then the later start (the more specific entry)
        let key = (b.priority, !b.flexible, b.start);
        if best.as_ref().is_none_or(|(_, _, k)| key > *k) {
            best = Some((i, left.max(1), key));
        }
    }
    best.map(|(i, left, _)| (i, left))
}

/// How long an override lasts before it is renewed, in game minutes.
fn override_minutes(reason: Override) -> u64 {
    match reason {
        Override::Exhausted => 60,
        Override::FreeTime => 30,
    }
}

/// The first game minute after `now` at which [`due_block`] may answer
/// differently: the nearest start or end of an entry (shifted as on `day`),
/// the shifted midnight of a flexible entry (its weekday changes), or real
/// midnight (the day's shifts change).
pub fn next_boundary(
    def: &AgentDef,
    rng: &WorldRng,
    agent: u32,
    day: u64,
    minute: u16,
    now: u64,
) -> u64 {
    let day_len = i32::from(DAY_MINUTES);
    let t = i32::from(minute);
    let mut soonest = day_len - t;
    for (i, b) in def.schedule.iter().enumerate() {
        let shift = if b.flexible {
            flexible_shift(rng, agent, day, i)
        } else {
            0
        };
        for edge in [i32::from(b.start) + shift, i32::from(b.end) + shift, shift] {
            let ahead = (edge - t).rem_euclid(day_len);
            if ahead > 0 && ahead < soonest {
                soonest = ahead;
            }
        }
    }
    now + soonest as u64
}

#[expect(
    clippy::too_many_arguments,
    reason = "a bevy system takes what it touches as parameters"
)]
pub fn update_activities(
    clock: Res<GameClock>,
    rng: Res<WorldRng>,
    defs: Res<Defs>,
    config: Res<SimConfig>,
    mut stats: ResMut<Stats>,
    mut outbox: ResMut<Outbox>,
    mut agents: Query<(&AgentIdx, &mut Activity, &Needs)>,
    mut next_check: Local<Vec<u64>>,
    mut rescheduled: ResMut<super::reload::Rescheduled>,
) {
    let ticks_per_minute = (60 / clock.seconds_per_tick).max(1);
    let slot = clock.tick % ticks_per_minute;
    let now = clock.minutes();
    let (day, weekday, minute) = (clock.day(), clock.weekday(), clock.minute_of_day());
    for (idx, mut activity, needs) in &mut agents {
        // a schedule reloaded under the agent: checked now, cache or not
        let forced = !rescheduled.0.is_empty() && rescheduled.0.remove(&idx.0);
        // spread the checks over the ticks of a game minute; on tick 1 check everyone
        if u64::from(idx.0) % ticks_per_minute != slot && clock.tick > 1 && !forced {
            continue;
        }
        let def = &defs.agents[idx.0 as usize];
        let resting = activity.override_reason == Some(Override::Exhausted);
        let exhausted = needs.energy < EXHAUSTED || (resting && needs.energy < RECOVERED);
        // The schedule's answer cannot change before the next entry boundary
        // (`next_boundary`), so between boundaries only needs can change the
        // activity: skip the schedule unless exhaustion starts or ends, or
        // something else touched the activity. A cache: same outcome, checked
        // by the state hash of the simulate runs in BENCHMARKS.md.
        let slot = idx.0 as usize;
        if next_check.len() <= slot {
            next_check.resize(slot + 1, 0);
        }
        if now < next_check[slot] && exhausted == resting && !activity.is_changed() && !forced {
            if let Some(reason) = activity.override_reason
                && activity.until <= now
            {
                activity.bypass_change_detection().until = now + override_minutes(reason);
            }
            continue;
        }
        next_check[slot] = next_boundary(def, &rng, idx.0, day, minute, now);
        let due = due_block(def, &rng, idx.0, day, weekday, minute);
        let sleeping_block =
            exhausted && due.is_some_and(|(i, _)| is_sleep(&def.schedule[i].activity));
        let (block, reason, location, until) = match due {
            _ if exhausted && !sleeping_block => (
                None,
                Some(Override::Exhausted),
                def.home,
                now + override_minutes(Override::Exhausted),
            ),
            Some((i, left)) => (
                Some(i as u16),
                None,
                def.schedule[i].location,
                now + u64::from(left),
            ),
            None => {
                // free time: stay where the last activity was
                (
                    None,
                    Some(Override::FreeTime),
                    activity.location,
                    now + override_minutes(Override::FreeTime),
                )
            }
        };
        if activity.block == block
            && activity.override_reason == reason
            && activity.location == location
        {
            // the same activity goes on; free time and rest are renewed quietly
            if reason.is_some() && activity.until <= now {
                activity.bypass_change_detection().until = until;
            }
            continue;
        }
        // resting at home when exhausted is sleep too: it is how energy comes back
        let sleep = match (block, reason) {
            (Some(b), _) => is_sleep(&def.schedule[b as usize].activity),
            (None, Some(Override::Exhausted)) => true,
            _ => false,
        };
        *activity = Activity {
            block,
            override_reason: reason,
            location,
            since: now,
            until,
            sleep,
        };
        stats.activity_changes += 1;
        if config.emit_activity_events {
            outbox.push(
                clock.tick,
                WorldEvent::ActivityChanged {
                    agent: idx.0,
                    activity: activity_label(def, &activity).to_owned(),
                    location,
                },
            );
        }
    }
}

/// Whether an activity is sleep (the agent rests and recovers energy).
/// An activity is sleep when one of its words is a sleep word ("sleep",
/// "asleep", "nap", "doze", "bed", "bedtime" and their -s/-ing forms):
/// "go to bed" is, "weed the flower beds" and "fold napkins" are not.
pub fn is_sleep(activity: &str) -> bool {
    const WORDS: &[&str] = &[
        "sleep", "sleeps", "sleeping", "asleep", "nap", "naps", "napping", "doze", "dozes",
        "dozing", "bed", "bedtime",
    ];
    activity
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| WORDS.iter().any(|s| w.eq_ignore_ascii_case(s)))
}

/// What an agent is doing, in the kinds the rules tell apart: a schedule
/// entry by its designer's label, or one of the states no entry names.
/// Labels travel as text (events, memories, prompts, the wire); this is
/// the one place that text is made and read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityLabel<'a> {
    /// A schedule entry, by its label ("bake bread").
    Scheduled(&'a str),
    /// Resting at home: exhaustion overrides the schedule.
    Resting,
    /// No schedule entry covers the time.
    FreeTime,
    /// The entry the agent was on is gone (a reload removed it).
    Idle,
}

impl<'a> ActivityLabel<'a> {
    /// The label of schedule entry `block` of `def` (free time for none).
    pub fn of_block(def: &'a AgentDef, block: Option<u16>) -> Self {
        match block {
            Some(b) => def
                .schedule
                .get(usize::from(b))
                .map_or(Self::Idle, |s| Self::Scheduled(s.activity.as_str())),
            None => Self::FreeTime,
        }
    }

    /// What `activity` is, for the agent `def`.
    pub fn of(def: &'a AgentDef, activity: &Activity) -> Self {
        match (activity.block, activity.override_reason) {
            (None, Some(Override::Exhausted)) => Self::Resting,
            (block, _) => Self::of_block(def, block),
        }
    }

    /// A label as text reads back: the states by their words, anything
    /// else a schedule entry.
    pub fn parse(label: &'a str) -> Self {
        match label {
            "resting at home" => Self::Resting,
            "free time" => Self::FreeTime,
            "idle" => Self::Idle,
            other => Self::Scheduled(other),
        }
    }

    /// The words users read.
    pub fn as_str(self) -> &'a str {
        match self {
            Self::Scheduled(label) => label,
            Self::Resting => "resting at home",
            Self::FreeTime => "free time",
            Self::Idle => "idle",
        }
    }

    /// Nothing in particular to do: free time, or no entry at all.
    pub fn is_unoccupied(self) -> bool {
        matches!(self, Self::FreeTime | Self::Idle)
    }
}

impl std::fmt::Display for ActivityLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A short description of what an agent is doing.
pub fn activity_label<'a>(def: &'a AgentDef, activity: &Activity) -> &'a str {
    ActivityLabel::of(def, activity).as_str()
}

#[cfg(test)]
mod tests {

    #[test]
    fn activity_labels_read_back_as_they_were_written() {
        for label in [
            ActivityLabel::Scheduled("bake bread"),
            ActivityLabel::Resting,
            ActivityLabel::FreeTime,
            ActivityLabel::Idle,
        ] {
            assert_eq!(ActivityLabel::parse(label.as_str()), label);
        }
        assert!(ActivityLabel::parse("free time").is_unoccupied());
        assert!(ActivityLabel::parse("idle").is_unoccupied());
        assert!(!ActivityLabel::parse("resting at home").is_unoccupied());
        assert!(!ActivityLabel::parse("bake bread").is_unoccupied());
    }
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;
    use crate::components::{
        Facing, Movement, Perception, Plan, PlanStatus, Position, Relationships, Talk,
    };
    use crate::testkit::{self, events};
    use hearth_content::{LocationId, ScheduleBlock};

    const DAILY: u8 = 0x7f;
    const MONDAY: u8 = 1;
    const HOME: LocationId = 1;
    const BAKERY: LocationId = 2;
    const MARKET: LocationId = 3;

    const fn h(hours: u16) -> u16 {
        hours * 60
    }

    fn block(activity: &str, location: LocationId, start: u16, end: u16) -> ScheduleBlock {
        ScheduleBlock {
            days: DAILY,
            start,
            end,
            activity: activity.into(),
            location,
            object: None,
            priority: 5,
            flexible: false,
        }
    }

    fn def(id: &str, schedule: Vec<ScheduleBlock>) -> AgentDef {
        let mut d = testkit::def(id, "Keep the oven warm", schedule);
        d.home = HOME;
        d.start = HOME;
        d
    }

    /// A world at `minute` of day 0 (Monday) holding one agent per
    /// definition, each in free time at home, with the full component set.
    fn setup(defs: Vec<AgentDef>, minute: u16) -> (World, Vec<Entity>) {
        let config = SimConfig::default();
        let clock = GameClock::new(
            config.tick_rate,
            config.game_minutes_per_second,
            u32::from(minute),
        );
        let now = clock.minutes();
        let mut world = World::new();
        let n = defs.len();
        world.insert_resource(clock);
        world.insert_resource(WorldRng::new(7));
        world.insert_resource(Defs {
            agents: Arc::new(defs),
        });
        world.insert_resource(config);
        world.insert_resource(Stats::default());
        world.insert_resource(Outbox::default());
        world.insert_resource(crate::reload::Rescheduled::default());
        let agents = (0..n)
            .map(|i| {
                world
                    .spawn((
                        AgentIdx(i as u32),
                        Position { x: 3.0, y: 3.0 },
                        Facing::default(),
                        Activity {
                            block: None,
                            override_reason: Some(Override::FreeTime),
                            location: HOME,
                            since: now,
                            until: now,
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
                        Movement::default(),
                        Needs::default(),
                        Perception::default(),
                        Talk::default(),
                        Relationships::default(),
                    ))
                    .id()
            })
            .collect();
        (world, agents)
    }

    /// Agents whose `Activity` changed since the probe last ran.
    #[derive(Debug, Default, Resource)]
    struct Touched(Vec<u32>);

    fn probe(agents: Query<&AgentIdx, Changed<Activity>>, mut touched: ResMut<Touched>) {
        touched.0 = agents.iter().map(|i| i.0).collect();
        touched.0.sort_unstable();
    }

    fn activities() -> Schedule {
        let mut schedule = Schedule::default();
        schedule.add_systems((update_activities, probe).chain());
        schedule
    }

    fn set_time(world: &mut World, day: u64, minute: u16) {
        world.resource_mut::<GameClock>().seconds = (day * 1440 + u64::from(minute)) * 60;
    }

    fn activity(world: &World, e: Entity) -> Activity {
        world
            .get::<Activity>(e)
            .expect("agent has an activity")
            .clone()
    }

    /// What `def`'s agent does at `minute` of `day`, from free time, on tick 0.
    fn activity_at(def: AgentDef, energy: f32, day: u64, minute: u16) -> Activity {
        let (mut world, agents) = setup(vec![def], 0);
        world.insert_resource(Touched::default());
        set_time(&mut world, day, minute);
        world.get_mut::<Needs>(agents[0]).expect("needs").energy = energy;
        activities().run(&mut world);
        activity(&world, agents[0])
    }

    #[test]
    fn the_next_boundary_is_the_nearest_entry_edge_or_midnight() {
        let rng = WorldRng::new(7);
        let d = def(
            "ada",
            vec![
                block("bake", BAKERY, h(6), h(14)),
                block("sell", MARKET, h(10), h(12)),
            ],
        );
        let at = |minute: u16| next_boundary(&d, &rng, 0, 0, minute, u64::from(minute)) as u16;
        assert_eq!(at(h(5)), h(6));
        assert_eq!(at(h(6)), h(10), "an edge at the minute itself is behind");
        assert_eq!(at(h(11)), h(12));
        assert_eq!(at(h(13)), h(14));
        assert_eq!(at(h(20)), h(24), "after the last edge: midnight");
        // a flexible entry moves its edges by the day's shift
        let mut flexible = block("walk", MARKET, h(16), h(17));
        flexible.flexible = true;
        let f = def("bo", vec![flexible]);
        let shift = flexible_shift(&rng, 0, 0, 0);
        let start = (i32::from(h(16)) + shift) as u16;
        assert_eq!(
            next_boundary(&f, &rng, 0, 0, h(15), 0),
            u64::from(start - h(15))
        );
    }

    #[test]
    fn sleep_is_recognised() {
        assert!(is_sleep("Sleep"));
        assert!(is_sleep("take a nap"));
        assert!(is_sleep("go to bed"));
        assert!(!is_sleep("bake bread"));
    }

    #[test]
    fn the_entry_due_becomes_the_activity_once_with_one_event() {
        let (mut world, agents) = setup(
            vec![def("ada", vec![block("bake", BAKERY, h(6), h(14))])],
            h(7),
        );
        world.insert_resource(Touched::default());
        let mut schedule = activities();
        schedule.run(&mut world);
        let now = u64::from(h(7));
        assert_eq!(
            activity(&world, agents[0]),
            Activity {
                block: Some(0),
                override_reason: None,
                location: BAKERY,
                since: now,
                until: now + u64::from(h(7)),
                sleep: false,
            }
        );
        assert_eq!(
            events(&mut world),
            vec![WorldEvent::ActivityChanged {
                agent: 0,
                activity: "bake".into(),
                location: BAKERY,
            }]
        );
        assert_eq!(world.resource::<Stats>().activity_changes, 1);

        // later in the same entry: nothing changes, nothing is announced
        for minute in [h(7) + 1, h(9), h(14) - 1] {
            set_time(&mut world, 0, minute);
            schedule.run(&mut world);
            assert_eq!(activity(&world, agents[0]).since, now);
            assert!(events(&mut world).is_empty(), "at minute {minute}");
            assert!(world.resource::<Touched>().0.is_empty());
        }
        assert_eq!(world.resource::<Stats>().activity_changes, 1);

        // the entry is over: free time where the agent was, announced as such
        set_time(&mut world, 0, h(14));
        schedule.run(&mut world);
        let a = activity(&world, agents[0]);
        assert_eq!(
            (a.block, a.override_reason, a.location, a.since, a.until),
            (
                None,
                Some(Override::FreeTime),
                BAKERY,
                u64::from(h(14)),
                u64::from(h(14)) + 30
            )
        );
        assert_eq!(
            events(&mut world),
            vec![WorldEvent::ActivityChanged {
                agent: 0,
                activity: "free time".into(),
                location: BAKERY,
            }]
        );
    }

    #[test]
    fn the_higher_priority_entry_wins_whatever_the_order() {
        let low = block("bake", BAKERY, h(6), h(14));
        let high = ScheduleBlock {
            priority: 8,
            ..block("sell at the market", MARKET, h(7), h(9))
        };
        let first = def("ada", vec![low.clone(), high.clone()]);
        let second = def("bo", vec![high, low]);
        for (def, expected) in [(first, 1), (second, 0)] {
            let at_eight = activity_at(def.clone(), 0.9, 0, h(8));
            assert_eq!(at_eight.block, Some(expected));
            assert_eq!(at_eight.location, MARKET);
            assert_eq!(at_eight.until, u64::from(h(9)), "ends with the entry");
            // outside the high entry the low one applies
            let at_ten = activity_at(def, 0.9, 0, h(10));
            assert_eq!(at_ten.block, Some(1 - expected));
            assert_eq!(at_ten.location, BAKERY);
        }
    }

    #[test]
    fn a_night_entry_covers_the_early_hours_of_the_next_day_and_is_sleep() {
        let night = ScheduleBlock {
            days: MONDAY,
            ..block("sleep", HOME, h(22), h(6))
        };
        let ada = def("ada", vec![night]);
        let monday_late = activity_at(ada.clone(), 0.9, 0, h(23));
        assert_eq!(
            monday_late,
            Activity {
                block: Some(0),
                override_reason: None,
                location: HOME,
                since: u64::from(h(23)),
                until: u64::from(h(24) + h(6)),
                sleep: true,
            }
        );
        let tuesday_early = activity_at(ada.clone(), 0.9, 1, h(2));
        let tuesday = 1440;
        assert_eq!(tuesday_early.block, Some(0));
        assert!(tuesday_early.sleep);
        assert_eq!(tuesday_early.until, tuesday + u64::from(h(6)));
        // Monday's early hours belong to Sunday night, not in the entry's days
        let monday_early = activity_at(ada.clone(), 0.9, 0, h(2));
        assert_eq!(monday_early.block, None);
        assert!(!monday_early.sleep);
        assert_eq!(activity_at(ada.clone(), 0.9, 1, h(23)).block, None);
        assert_eq!(activity_at(ada, 0.9, 1, h(6)).block, None, "ends at 06:00");

        // a night entry that is not sleep keeps the agent awake
        let watch = def(
            "bo",
            vec![block("keep the night watch", MARKET, h(22), h(6))],
        );
        let a = activity_at(watch, 0.9, 3, h(1));
        assert_eq!((a.block, a.sleep), (Some(0), false));
    }

    #[test]
    fn exhaustion_sends_the_agent_home_except_into_its_sleep() {
        let ada = def(
            "ada",
            vec![
                block("bake", BAKERY, h(6), h(14)),
                block("sleep", HOME, h(22), h(6)),
            ],
        );
        let (mut world, agents) = setup(vec![ada.clone()], h(7));
        world.insert_resource(Touched::default());
        world.get_mut::<Needs>(agents[0]).expect("needs").energy = EXHAUSTED - 0.01;
        activities().run(&mut world);
        let now = u64::from(h(7));
        assert_eq!(
            activity(&world, agents[0]),
            Activity {
                block: None,
                override_reason: Some(Override::Exhausted),
                location: HOME,
                since: now,
                until: now + 60,
                // resting at home restores energy like sleep
                sleep: true,
            }
        );
        assert_eq!(
            events(&mut world),
            vec![WorldEvent::ActivityChanged {
                agent: 0,
                activity: "resting at home".into(),
                location: HOME,
            }]
        );
        // just above the threshold the schedule holds
        assert_eq!(activity_at(ada.clone(), EXHAUSTED, 0, h(7)).block, Some(0));
        // during its sleep entry an exhausted agent simply sleeps
        let night = activity_at(ada, 0.01, 0, h(23));
        assert_eq!(
            (night.block, night.override_reason, night.sleep),
            (Some(1), None, true)
        );
    }

    #[test]
    fn an_exhausted_agent_rests_until_it_has_recovered() {
        let (mut world, agents) = setup(
            vec![def("ada", vec![block("bake", BAKERY, h(6), h(14))])],
            h(7),
        );
        world.insert_resource(Touched::default());
        let mut schedule = activities();
        world.get_mut::<Needs>(agents[0]).expect("needs").energy = 0.05;
        schedule.run(&mut world);
        assert_eq!(
            activity(&world, agents[0]).override_reason,
            Some(Override::Exhausted)
        );
        // above EXHAUSTED but below RECOVERED: still resting, quietly
        events(&mut world);
        world.get_mut::<Needs>(agents[0]).expect("needs").energy = (EXHAUSTED + RECOVERED) / 2.0;
        set_time(&mut world, 0, h(7) + 10);
        schedule.run(&mut world);
        assert_eq!(
            activity(&world, agents[0]).override_reason,
            Some(Override::Exhausted)
        );
        assert!(events(&mut world).is_empty());
        // rest is renewed when its hour is up, without counting as a change
        set_time(&mut world, 0, h(8) + 5);
        schedule.run(&mut world);
        let a = activity(&world, agents[0]);
        assert_eq!(a.override_reason, Some(Override::Exhausted));
        assert_eq!(a.until, u64::from(h(8) + 5) + 60);
        assert!(world.resource::<Touched>().0.is_empty());
        assert!(events(&mut world).is_empty());
        // recovered: back to the schedule
        world.get_mut::<Needs>(agents[0]).expect("needs").energy = RECOVERED + 0.01;
        set_time(&mut world, 0, h(8) + 6);
        schedule.run(&mut world);
        let a = activity(&world, agents[0]);
        assert_eq!((a.block, a.override_reason), (Some(0), None));
        assert_eq!(world.resource::<Touched>().0, vec![0]);
    }

    #[test]
    fn free_time_is_renewed_quietly() {
        let (mut world, agents) = setup(vec![def("ada", vec![])], h(7));
        world.insert_resource(Touched::default());
        let mut schedule = activities();
        // the spawned activity is free time at home until now: the same activity
        schedule.run(&mut world);
        assert!(events(&mut world).is_empty());
        let a = activity(&world, agents[0]);
        assert_eq!(a.since, u64::from(h(7)), "not restarted");
        assert_eq!(a.until, u64::from(h(7)) + 30, "renewed");
        set_time(&mut world, 0, h(7) + 29);
        schedule.run(&mut world);
        assert_eq!(activity(&world, agents[0]).until, u64::from(h(7)) + 30);
        set_time(&mut world, 0, h(7) + 30);
        schedule.run(&mut world);
        assert_eq!(activity(&world, agents[0]).until, u64::from(h(7)) + 60);
        assert!(world.resource::<Touched>().0.is_empty(), "no replanning");
        assert_eq!(world.resource::<Stats>().activity_changes, 0);
    }

    #[test]
    fn agents_are_checked_on_their_slot_of_the_minute() {
        let defs: Vec<AgentDef> = (0..14)
            .map(|i| def(&format!("a{i}"), vec![block("bake", BAKERY, h(6), h(14))]))
            .collect();
        let (mut world, agents) = setup(defs.clone(), h(7));
        world.insert_resource(Touched::default());
        let mut schedule = activities();
        // ten ticks per game minute: tick 13 is slot 3
        world.resource_mut::<GameClock>().tick = 13;
        schedule.run(&mut world);
        assert_eq!(world.resource::<Stats>().activity_changes, 2);
        let changed: Vec<bool> = agents
            .iter()
            .map(|e| activity(&world, *e).block.is_some())
            .collect();
        let expected: Vec<bool> = (0..14).map(|i| i % 10 == 3).collect();
        assert_eq!(changed, expected);
        world.resource_mut::<GameClock>().tick = 20;
        schedule.run(&mut world);
        assert_eq!(world.resource::<Touched>().0, vec![0, 10]);

        // the first ticks check everyone
        let (mut world, agents) = setup(defs, h(7));
        world.insert_resource(Touched::default());
        world.resource_mut::<GameClock>().tick = 1;
        activities().run(&mut world);
        assert!(agents.iter().all(|e| activity(&world, *e).block == Some(0)));
        assert_eq!(world.resource::<Stats>().activity_changes, 14);
    }

    #[test]
    fn due_block_picks_by_priority_then_fixed_then_later_start() {
        let rng = WorldRng::new(3);
        let none = def("ada", vec![block("bake", BAKERY, h(6), h(14))]);
        assert_eq!(due_block(&none, &rng, 0, 0, 0, h(5)), None);
        assert_eq!(due_block(&none, &rng, 0, 0, 0, h(6)), Some((0, h(8))));
        assert_eq!(due_block(&none, &rng, 0, 0, 0, h(14) - 1), Some((0, 1)));
        assert_eq!(due_block(&none, &rng, 0, 0, 0, h(14)), None);
        // an entry on weekdays only is not due on Saturday
        let weekdays = def(
            "bo",
            vec![ScheduleBlock {
                days: 0b1_1111,
                ..block("bake", BAKERY, h(6), h(14))
            }],
        );
        assert_eq!(due_block(&weekdays, &rng, 0, 4, 4, h(7)), Some((0, h(7))));
        assert_eq!(due_block(&weekdays, &rng, 0, 5, 5, h(7)), None);
        // equal priority: the later start (the more specific entry) wins
        let nested = def(
            "cy",
            vec![
                block("bake", BAKERY, h(6), h(14)),
                block("lunch", HOME, h(12), h(13)),
            ],
        );
        assert_eq!(due_block(&nested, &rng, 0, 0, 0, h(12) + 30), Some((1, 30)));
        assert_eq!(due_block(&nested, &rng, 0, 0, 0, h(11)), Some((0, h(3))));
        // equal priority: a fixed entry beats a flexible one starting later
        let flexible = def(
            "di",
            vec![
                block("bake", BAKERY, h(6), h(14)),
                ScheduleBlock {
                    flexible: true,
                    ..block("stroll", MARKET, h(8), h(12))
                },
            ],
        );
        assert_eq!(
            due_block(&flexible, &rng, 0, 0, 0, h(10)).map(|d| d.0),
            Some(0)
        );
        // an entry to midnight ("24:00")
        let evening = def("ed", vec![block("read", HOME, h(20), 1440)]);
        assert_eq!(due_block(&evening, &rng, 0, 0, 0, h(23)), Some((0, 60)));
    }

    #[test]
    fn flexible_entries_move_by_the_days_shift() {
        let rng = WorldRng::new(11);
        let walk = def(
            "ada",
            vec![ScheduleBlock {
                flexible: true,
                ..block("walk", MARKET, h(9), h(10))
            }],
        );
        let (agent, day) = (
            4,
            (0..50u64)
                .find(|d| flexible_shift(&rng, 4, *d, 0) != 0)
                .expect("some day shifts"),
        );
        let shift = flexible_shift(&rng, agent, day, 0);
        let weekday = (day % 7) as u8;
        let at = |minute: i32| due_block(&walk, &rng, agent, day, weekday, minute as u16);
        let start = i32::from(h(9)) + shift;
        let end = i32::from(h(10)) + shift;
        assert_eq!(at(start - 1), None);
        assert_eq!(at(start), Some((0, 60)));
        assert_eq!(at(end - 1), Some((0, 1)));
        assert_eq!(at(end), None);
    }

    #[test]
    fn flexible_shifts_are_within_half_an_hour_by_fives_and_deterministic() {
        let rng = WorldRng::new(5);
        let mut seen = BTreeSet::new();
        for agent in 0..40 {
            for day in 0..30 {
                for block in 0..3 {
                    let s = flexible_shift(&rng, agent, day, block);
                    assert!((-30..=30).contains(&s), "{s}");
                    assert_eq!(s % 5, 0, "{s}");
                    assert_eq!(s, flexible_shift(&rng, agent, day, block));
                    assert_eq!(s, flexible_shift(&WorldRng::new(5), agent, day, block));
                    seen.insert(s);
                }
            }
        }
        // every step of the range is used, so shifts vary by agent, day and block
        assert_eq!(seen, (-30..=30).step_by(5).collect::<BTreeSet<i32>>());
        let days: BTreeSet<i32> = (0..30).map(|d| flexible_shift(&rng, 0, d, 0)).collect();
        assert!(days.len() > 3, "the shift changes from day to day");
        let seeds: Vec<i32> = (0..20)
            .map(|s| flexible_shift(&WorldRng::new(s), 0, 0, 0))
            .collect();
        assert!(seeds.iter().any(|s| *s != seeds[0]), "and with the seed");
    }

    #[test]
    fn sleep_words_are_whole_words() {
        // regression: substring matching made these sleep
        for awake in [
            "weed the flower beds",
            "fold napkins",
            "snap beans",
            "embed tiles",
        ] {
            assert!(!is_sleep(awake), "{awake}");
        }
        for asleep in [
            "sleep",
            "nap in his armchair",
            "go to bed",
            "Dozing by the fire",
            "Bedtime story",
        ] {
            assert!(is_sleep(asleep), "{asleep}");
        }
    }

    #[test]
    fn a_flexible_shift_across_midnight_moves_to_the_other_day() {
        // regression: the shifted minute kept the unshifted weekday
        let rng = WorldRng::new(1);
        let mut early = block("early shift", BAKERY, 0, h(1));
        early.days = 0b001_1111; // Monday to Friday
        early.flexible = true;
        let d = def("ada", vec![early]);
        // an agent whose entry moves earlier on day 4 (a Friday) and day 6 (a Sunday)
        let agent = (0..10_000u32)
            .find(|a| flexible_shift(&rng, *a, 4, 0) < 0 && flexible_shift(&rng, *a, 6, 0) < 0)
            .expect("some agent shifts earlier on both days");
        let friday = flexible_shift(&rng, agent, 4, 0);
        // Friday late evening: shifted, that would be Saturday's entry, and there is none
        let late_friday = (i32::from(DAY_MINUTES) + friday + 5) as u16;
        assert_eq!(due_block(&d, &rng, agent, 4, 4, late_friday), None);
        // Sunday late evening: shifted, that is Monday's entry, which starts early
        let sunday = flexible_shift(&rng, agent, 6, 0);
        let late_sunday = (i32::from(DAY_MINUTES) + sunday + 5) as u16;
        assert!(due_block(&d, &rng, agent, 6, 6, late_sunday).is_some());
    }
}
