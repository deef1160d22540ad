//! Content designers write — agent files and Tiled maps — and its compiled
//! form, [`Content`], which the world is built from. Reading and checking
//! files is [`validate`]'s job; the types of the files are in [`agent`] and
//! [`tiled`]; [`map`] is the map as the simulation sees it. Touches the file
//! system only to read content.

pub mod agent;
pub mod map;
pub mod synthetic;
pub mod tiled;
pub mod validate;

pub use agent::AgentFile;
pub use map::{LocationId, Tile, WorldMap};

/// Minutes in a day; schedule times are minutes after midnight.
pub const DAY_MINUTES: u16 = 24 * 60;

/// One schedule entry, with its location resolved and its times parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleBlock {
    /// A bit per weekday, Monday = bit 0.
    pub days: u8,
    /// Minutes after midnight, `0..1440`.
    pub start: u16,
    /// Minutes after midnight, `1..=1440`; smaller than `start` when the block
    /// crosses midnight (it then ends on the next day).
    pub end: u16,
    pub activity: String,
    pub location: LocationId,
    pub object: Option<String>,
    pub priority: u8,
    pub flexible: bool,
}

impl ScheduleBlock {
    /// Whether the block covers `minute` of a day whose weekday is `weekday`
    /// (0 = Monday). A block crossing midnight covers the early hours of the
    /// day after each of its days.
    pub fn covers(&self, weekday: u8, minute: u16) -> bool {
        let on = |d: u8| self.days & (1 << (d % 7)) != 0;
        if self.start < self.end {
            on(weekday) && minute >= self.start && minute < self.end
        } else {
            (on(weekday) && minute >= self.start) || (on((weekday + 6) % 7) && minute < self.end)
        }
    }

    /// Length in minutes.
    pub fn duration(&self) -> u16 {
        if self.start < self.end {
            self.end - self.start
        } else {
            DAY_MINUTES - self.start + self.end
        }
    }
}

/// An agent as the world uses it: the designer's file plus what was resolved
/// against the map and the other agents.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDef {
    pub file: AgentFile,
    pub home: LocationId,
    pub start: LocationId,
    pub schedule: Vec<ScheduleBlock>,
}

/// A validated content set: the map and every agent, in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub map: WorldMap,
    pub agents: Vec<AgentDef>,
}

/// Parses "HH:MM" into minutes after midnight; "24:00" is 1440 when
/// `allow_end_of_day`.
pub fn parse_clock(text: &str, allow_end_of_day: bool) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    match (h, m) {
        (24, 0) if allow_end_of_day => Some(DAY_MINUTES),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(start: u16, end: u16, days: u8) -> ScheduleBlock {
        ScheduleBlock {
            days,
            start,
            end,
            activity: "x".into(),
            location: 0,
            object: None,
            priority: 5,
            flexible: false,
        }
    }

    #[test]
    fn clock_parsing() {
        assert_eq!(parse_clock("06:30", false), Some(390));
        assert_eq!(parse_clock("24:00", true), Some(1440));
        assert_eq!(parse_clock("24:00", false), None);
        assert_eq!(parse_clock("7:00", false), None);
        assert_eq!(parse_clock("12:60", false), None);
        assert_eq!(parse_clock("noon", false), None);
    }

    #[test]
    fn blocks_cover_their_days_and_cross_midnight() {
        let day = block(9 * 60, 17 * 60, 0b1); // Mondays only
        assert!(day.covers(0, 9 * 60));
        assert!(!day.covers(0, 17 * 60));
        assert!(!day.covers(1, 10 * 60));
        let night = block(22 * 60, 6 * 60, 0b1); // Monday 22:00 to Tuesday 06:00
        assert!(night.covers(0, 23 * 60));
        assert!(night.covers(1, 5 * 60));
        assert!(
            !night.covers(0, 5 * 60),
            "Monday early hours belong to Sunday's night"
        );
        assert_eq!(night.duration(), 8 * 60);
    }
}
