//! The game clock: ticks at a fixed rate and game time that runs faster than
//! real time (default 1 real second = 1 game minute), with game days and
//! weekdays. Touches only the [`GameClock`] resource.

use bevy_ecs::prelude::*;

use hearth_content::DAY_MINUTES;

/// Game time is kept in game seconds since the world's epoch, Monday 00:00 of day 0.
#[derive(Debug, Clone, Resource)]
pub struct GameClock {
    /// Ticks run so far.
    pub tick: u64,
    /// Game seconds since the epoch.
    pub seconds: u64,
    /// Game seconds per tick: (game minutes per real second) × 60 / tick rate.
    pub seconds_per_tick: u64,
    /// Ticks per real second.
    pub tick_rate: u32,
}

impl GameClock {
    /// A clock at `start_minute` of day 0 (Monday).
    pub fn new(tick_rate: u32, game_minutes_per_second: u32, start_minute: u32) -> Self {
        let tick_rate = tick_rate.max(1);
        Self {
            tick: 0,
            seconds: u64::from(start_minute) * 60,
            seconds_per_tick: (u64::from(game_minutes_per_second) * 60 / u64::from(tick_rate))
                .max(1),
            tick_rate,
        }
    }

    /// Game minutes since the epoch.
    pub fn minutes(&self) -> u64 {
        self.seconds / 60
    }

    /// Days since the epoch.
    pub fn day(&self) -> u64 {
        self.minutes() / u64::from(DAY_MINUTES)
    }

    /// 0 = Monday .. 6 = Sunday.
    pub fn weekday(&self) -> u8 {
        (self.day() % 7) as u8
    }

    /// Minute of the day, `0..1440`.
    pub fn minute_of_day(&self) -> u16 {
        (self.minutes() % u64::from(DAY_MINUTES)) as u16
    }

    /// Whether the last tick crossed into a new game minute.
    pub fn new_minute(&self) -> bool {
        self.seconds / 60 != self.seconds.saturating_sub(self.seconds_per_tick) / 60
    }

    /// Runs game time at `minutes_per_second` game minutes per real second.
    pub fn set_time_scale(&mut self, minutes_per_second: u32) {
        self.seconds_per_tick =
            (u64::from(minutes_per_second.max(1)) * 60 / u64::from(self.tick_rate.max(1))).max(1);
    }

    /// Game minutes per real second (the time scale).
    pub fn time_scale(&self) -> u32 {
        u32::try_from(self.seconds_per_tick * u64::from(self.tick_rate) / 60).unwrap_or(u32::MAX)
    }

    /// Game minutes per tick, as a fraction.
    pub fn minutes_per_tick(&self) -> f32 {
        self.seconds_per_tick as f32 / 60.0
    }

    /// "Mon 07:30, day 0".
    pub fn label(&self) -> String {
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let m = self.minute_of_day();
        format!(
            "{} {:02}:{:02}, day {}",
            DAYS[self.weekday() as usize],
            m / 60,
            m % 60,
            self.day()
        )
    }
}

/// Advances the clock by one tick.
pub fn advance(mut clock: ResMut<GameClock>) {
    clock.tick += 1;
    clock.seconds += clock.seconds_per_tick;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_hertz_one_minute_per_second() {
        let mut world = World::new();
        world.insert_resource(GameClock::new(10, 1, 6 * 60));
        let mut schedule = Schedule::default();
        schedule.add_systems(advance);
        let mut minutes_seen = 0;
        for _ in 0..10 {
            schedule.run(&mut world);
            if world.resource::<GameClock>().new_minute() {
                minutes_seen += 1;
            }
        }
        let clock = world.resource::<GameClock>();
        assert_eq!(clock.tick, 10);
        assert_eq!(clock.minute_of_day(), 6 * 60 + 1);
        assert_eq!(minutes_seen, 1);
        assert_eq!(clock.label(), "Mon 06:01, day 0");
    }

    #[test]
    fn days_and_weekdays_roll_over() {
        let mut c = GameClock::new(10, 1, 0);
        c.seconds = (7 * 1440 + 1440 + 90) * 60;
        assert_eq!(c.day(), 8);
        assert_eq!(c.weekday(), 1);
        assert_eq!(c.minute_of_day(), 90);
    }
}
