//! Game time as the database stores it: a `timestamp` (no zone) at the game
//! epoch 2001-01-01 00:00:00 (a Monday) plus the world clock's game seconds.
//! Pure conversions; touches nothing.
//!
//! ```
//! use hearth_db::game_time::{EPOCH, from_timestamp, to_timestamp};
//!
//! // day 2 (a Wednesday) at 07:30
//! let seconds = 2 * 86_400 + 7 * 3_600 + 30 * 60;
//! let ts = to_timestamp(seconds);
//! assert_eq!(ts.to_string(), "2001-01-03 07:30:00");
//! assert_eq!(from_timestamp(ts), seconds);
//! assert_eq!(to_timestamp(0), EPOCH);
//! // before the epoch there is no game time: it clamps to 0
//! assert_eq!(from_timestamp(EPOCH - chrono::TimeDelta::hours(1)), 0);
//! ```

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};

/// Game second 0: Monday 2001-01-01 00:00:00.
pub const EPOCH: NaiveDateTime = match NaiveDate::from_ymd_opt(2001, 1, 1) {
    Some(date) => NaiveDateTime::new(date, NaiveTime::MIN),
    None => panic!("2001-01-01 is a valid date"),
};

/// The timestamp of game second `seconds`. Saturates at the latest time
/// chrono represents (year 262,142, within PostgreSQL's `timestamp` range)
/// instead of overflowing: no world clock gets there.
pub fn to_timestamp(seconds: u64) -> NaiveDateTime {
    i64::try_from(seconds)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|delta| EPOCH.checked_add_signed(delta))
        .unwrap_or(NaiveDateTime::MAX)
}

/// The game second of `ts`: whole seconds since [`EPOCH`], sub-second parts
/// dropped; a time before the epoch clamps to 0.
pub fn from_timestamp(ts: NaiveDateTime) -> u64 {
    u64::try_from((ts - EPOCH).num_seconds()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Timelike, Weekday};

    use super::*;

    #[test]
    fn the_epoch_is_a_monday_at_midnight() {
        assert_eq!(EPOCH.weekday(), Weekday::Mon);
        assert_eq!((EPOCH.hour(), EPOCH.minute(), EPOCH.second()), (0, 0, 0));
    }

    #[test]
    fn round_trips_game_seconds() {
        for s in [
            0,
            1,
            59,
            3_600,
            86_399,
            86_400,
            7 * 86_400 + 1,
            10_000_000_000,
        ] {
            assert_eq!(from_timestamp(to_timestamp(s)), s, "{s}");
        }
        assert_eq!(to_timestamp(7 * 86_400).weekday(), Weekday::Mon);
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(to_timestamp(u64::MAX), NaiveDateTime::MAX);
        assert!(from_timestamp(NaiveDateTime::MAX) > 8_000_000_000_000);
        assert_eq!(from_timestamp(NaiveDateTime::MIN), 0);
    }

    #[test]
    fn drops_sub_seconds() {
        let ts = to_timestamp(10) + TimeDelta::milliseconds(999);
        assert_eq!(from_timestamp(ts), 10);
    }
}
