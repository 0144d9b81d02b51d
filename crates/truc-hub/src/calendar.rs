//! Working time: which days and hours count towards a feedback deadline, in
//! the axis's local time (a fixed UTC offset: Vietnam has no daylight saving).

use std::collections::BTreeSet;

use time::{Date, Month};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// How far a working-time sum may look ahead before giving up (a calendar
/// with no working day at all would otherwise never end).
const DAYS_AHEAD_MAX: i64 = 3_660;

/// Working days, hours and holidays; parsed from `[calendar]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkingCalendar {
    utc_offset_ms: i64,
    /// Monday first.
    working_days: [bool; 7],
    start_ms: i64,
    end_ms: i64,
    /// Local days (days since 1970-01-01) that are not worked.
    holidays: BTreeSet<i64>,
}

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A `[calendar]` setting that does not parse; each variant's text starts
/// with the key as the config file writes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("calendar.utc_offset_minutes: {minutes} is outside -840..=840")]
    UtcOffset { minutes: i64 },
    #[error("calendar.working_days: {name:?} is not one of Mon, Tue, Wed, Thu, Fri, Sat, Sun")]
    UnknownDay { name: String },
    #[error("calendar.working_days: at least one day must be worked")]
    NoWorkingDay,
    #[error("calendar.working_hours: {hours:?} is not like 07:30-16:30")]
    NotARange { hours: String },
    #[error("calendar.working_hours: {time:?} is not a time like 07:30")]
    NotATime { time: String },
    #[error("calendar.working_hours: {hours:?} ends before it starts")]
    EndsBeforeStart { hours: String },
    #[error("calendar.holidays: {date:?} is not an ISO date like 2025-09-02")]
    NotADate { date: String },
}

impl CalendarError {
    /// The key as the config file writes it.
    pub fn field(&self) -> &'static str {
        match self {
            CalendarError::UtcOffset { .. } => "calendar.utc_offset_minutes",
            CalendarError::UnknownDay { .. } | CalendarError::NoWorkingDay => {
                "calendar.working_days"
            }
            CalendarError::NotARange { .. }
            | CalendarError::NotATime { .. }
            | CalendarError::EndsBeforeStart { .. } => "calendar.working_hours",
            CalendarError::NotADate { .. } => "calendar.holidays",
        }
    }
}

impl WorkingCalendar {
    /// Parses `"Mon,Tue,…"`, `"07:30-16:30"` and `"2025-01-01,…"`; errors name the key.
    pub fn parse(
        utc_offset_minutes: i64,
        working_days: &str,
        working_hours: &str,
        holidays: &str,
    ) -> Result<WorkingCalendar, CalendarError> {
        if !(-14 * 60..=14 * 60).contains(&utc_offset_minutes) {
            return Err(CalendarError::UtcOffset {
                minutes: utc_offset_minutes,
            });
        }
        let mut days = [false; 7];
        for name in working_days
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let index = DAY_NAMES
                .iter()
                .position(|day| day.eq_ignore_ascii_case(name))
                .ok_or_else(|| CalendarError::UnknownDay {
                    name: name.to_owned(),
                })?;
            days[index] = true;
        }
        if !days.contains(&true) {
            return Err(CalendarError::NoWorkingDay);
        }
        let (start, end) =
            working_hours
                .split_once('-')
                .ok_or_else(|| CalendarError::NotARange {
                    hours: working_hours.to_owned(),
                })?;
        let clock = |text: &str| -> Result<i64, CalendarError> {
            let not_a_time = || CalendarError::NotATime {
                time: text.to_owned(),
            };
            let (hours, minutes) = text.trim().split_once(':').ok_or_else(not_a_time)?;
            match (hours.parse::<i64>(), minutes.parse::<i64>()) {
                (Ok(h), Ok(m)) if (0..24).contains(&h) && (0..60).contains(&m) => {
                    Ok((h * 60 + m) * MINUTE_MS)
                }
                _ => Err(not_a_time()),
            }
        };
        let (start_ms, end_ms) = (clock(start)?, clock(end)?);
        if start_ms >= end_ms {
            return Err(CalendarError::EndsBeforeStart {
                hours: working_hours.to_owned(),
            });
        }
        let mut holiday_days = BTreeSet::new();
        for text in holidays.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            holiday_days.insert(
                local_day_of_iso(text).ok_or_else(|| CalendarError::NotADate {
                    date: text.to_owned(),
                })?,
            );
        }
        Ok(WorkingCalendar {
            utc_offset_ms: utc_offset_minutes * MINUTE_MS,
            working_days: days,
            start_ms,
            end_ms,
            holidays: holiday_days,
        })
    }

    fn works_on(&self, local_day: i64) -> bool {
        // 1970-01-01 was a Thursday (index 3, Monday first).
        self.working_days[(local_day + 3).rem_euclid(7) as usize]
            && !self.holidays.contains(&local_day)
    }

    /// The instant `minutes` of working time after `from_unix_ms`.
    pub fn add_working_minutes(&self, from_unix_ms: i64, minutes: u64) -> i64 {
        let mut remaining = minutes as i64 * MINUTE_MS;
        let mut local = from_unix_ms + self.utc_offset_ms;
        for _ in 0..DAYS_AHEAD_MAX {
            let day = local.div_euclid(DAY_MS);
            let day_start = day * DAY_MS;
            if self.works_on(day) {
                let position = (local - day_start).max(self.start_ms);
                if position < self.end_ms {
                    let available = self.end_ms - position;
                    if remaining <= available {
                        return day_start + position + remaining - self.utc_offset_ms;
                    }
                    remaining -= available;
                }
            }
            local = day_start + DAY_MS;
        }
        local - self.utc_offset_ms
    }

    /// The end of working hours on a local ISO date (a due date), as Unix ms.
    pub fn end_of_day(&self, iso_date: &str) -> Option<i64> {
        Some(local_day_of_iso(iso_date)? * DAY_MS + self.end_ms - self.utc_offset_ms)
    }
}

fn local_day_of_iso(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
    // Julian day 2440588 is 1970-01-01.
    Some(date.to_julian_day() as i64 - 2_440_588)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vietnam() -> WorkingCalendar {
        WorkingCalendar::parse(420, "Mon,Tue,Wed,Thu,Fri", "07:30-16:30", "2025-09-02").unwrap()
    }

    /// Unix ms of a Vietnam local time.
    fn local(iso: &str, hour: i64, minute: i64) -> i64 {
        local_day_of_iso(iso).unwrap() * DAY_MS + (hour * 60 + minute) * MINUTE_MS - 420 * MINUTE_MS
    }

    #[test]
    fn working_time_skips_evenings_weekends_and_holidays() {
        let calendar = vietnam();
        // Friday 2025-08-29 16:00 plus one working hour: Monday 08:00.
        assert_eq!(
            calendar.add_working_minutes(local("2025-08-29", 16, 0), 60),
            local("2025-09-01", 8, 0)
        );
        // Monday 2025-09-01 16:00 plus one hour skips the 2 September holiday.
        assert_eq!(
            calendar.add_working_minutes(local("2025-09-01", 16, 0), 60),
            local("2025-09-03", 8, 0)
        );
        // Saturday night counts from Monday's start.
        assert_eq!(
            calendar.add_working_minutes(local("2025-08-30", 22, 0), 540),
            local("2025-09-01", 16, 30)
        );
        // Within the day.
        assert_eq!(
            calendar.add_working_minutes(local("2025-08-28", 9, 0), 30),
            local("2025-08-28", 9, 30)
        );
        assert_eq!(
            calendar.end_of_day("2025-08-28"),
            Some(local("2025-08-28", 16, 30))
        );
    }

    #[test]
    fn bad_calendars_name_the_key() {
        let refused = |days: &str, hours: &str, holidays: &str| {
            WorkingCalendar::parse(420, days, hours, holidays).unwrap_err()
        };
        let funday = refused("Mon,Funday", "07:30-16:30", "");
        assert_eq!(
            funday,
            CalendarError::UnknownDay {
                name: "Funday".into()
            }
        );
        assert_eq!(funday.field(), "calendar.working_days");
        assert!(funday
            .to_string()
            .starts_with("calendar.working_days: \"Funday\""));
        let backwards = refused("Mon", "16:30-07:30", "");
        assert_eq!(backwards.field(), "calendar.working_hours");
        assert!(backwards.to_string().contains("ends before it starts"));
        assert_eq!(
            refused("Mon", "7h30-16:30", "").to_string(),
            "calendar.working_hours: \"7h30\" is not a time like 07:30"
        );
        assert_eq!(
            refused("Mon", "07:30-16:30", "2025-13-01").field(),
            "calendar.holidays"
        );
        assert_eq!(refused("", "07:30-16:30", ""), CalendarError::NoWorkingDay);
        assert_eq!(
            WorkingCalendar::parse(900, "Mon", "07:30-16:30", "")
                .unwrap_err()
                .field(),
            "calendar.utc_offset_minutes"
        );
    }
}
