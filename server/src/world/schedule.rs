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
use crate::content::{AgentDef, DAY_MINUTES};

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
        let m = (i32::from(minute) - shift).rem_euclid(i32::from(DAY_MINUTES)) as u16;
        if !b.covers(weekday, m) {
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

#[allow(clippy::too_many_arguments)]
pub fn update_activities(
    clock: Res<GameClock>,
    rng: Res<WorldRng>,
    defs: Res<Defs>,
    config: Res<SimConfig>,
    mut stats: ResMut<Stats>,
    mut outbox: ResMut<Outbox>,
    mut agents: Query<(&AgentIdx, &mut Activity, &Needs)>,
) {
    let ticks_per_minute = (60 / clock.seconds_per_tick).max(1);
    let slot = clock.tick % ticks_per_minute;
    let now = clock.minutes();
    let (day, weekday, minute) = (clock.day(), clock.weekday(), clock.minute_of_day());
    for (idx, mut activity, needs) in &mut agents {
        // spread the checks over the ticks of a game minute; on tick 1 check everyone
        if u64::from(idx.0) % ticks_per_minute != slot && clock.tick > 1 {
            continue;
        }
        let def = &defs.agents[idx.0 as usize];
        let exhausted = needs.energy < EXHAUSTED
            || (activity.override_reason == Some(Override::Exhausted) && needs.energy < RECOVERED);
        let due = due_block(def, &rng, idx.0, day, weekday, minute);
        let sleeping_block = due.is_some_and(|(i, _)| is_sleep(&def.schedule[i].activity));
        let (block, reason, location, until) = match due {
            _ if exhausted && !sleeping_block => {
                (None, Some(Override::Exhausted), def.home, now + 60)
            }
            Some((i, left)) => (
                Some(i as u16),
                None,
                def.schedule[i].location,
                now + u64::from(left),
            ),
            None => {
                // free time: stay where the last activity was
                (None, Some(Override::FreeTime), activity.location, now + 30)
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
        let sleep = block.is_some_and(|b| is_sleep(&def.schedule[b as usize].activity));
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
pub fn is_sleep(activity: &str) -> bool {
    let a = activity.to_ascii_lowercase();
    a.contains("sleep") || a.contains("nap") || a.contains("bed")
}

/// A short description of what an agent is doing.
pub fn activity_label<'a>(def: &'a AgentDef, activity: &Activity) -> &'a str {
    match (activity.block, activity.override_reason) {
        (Some(b), _) => def
            .schedule
            .get(b as usize)
            .map_or("idle", |s| s.activity.as_str()),
        (None, Some(Override::Exhausted)) => "resting at home",
        _ => "free time",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_is_recognised() {
        assert!(is_sleep("Sleep"));
        assert!(is_sleep("take a nap"));
        assert!(is_sleep("go to bed"));
        assert!(!is_sleep("bake bread"));
    }
}
