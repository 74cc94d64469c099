//! Cron expressions as a CronJob's `schedule` accepts them: checked before anything is created,
//! and read into a [`Schedule`] that says when it fires.
//!
//! Kubernetes parses schedules with the standard five-field parser of robfig/cron: minute, hour,
//! day of month, month, day of week; `*`, `?`, lists, ranges and steps; month and weekday names;
//! and the descriptors `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`),
//! `@hourly` and `@every DURATION`. A time zone goes in the CronJob's `timeZone` field, never in
//! the schedule (`TZ=` and `CRON_TZ=` are refused).
//!
//! [`check`] and [`Schedule::parse`] share one parser, so a schedule that passes the check is
//! one the operator can fire.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};

use crate::{Error, Result};

/// The time zone database compiled into the program. Named explicitly: another crate in the
/// program (the repository code's) turns on jiff's use of the machine's `/usr/share/zoneinfo`
/// for the process-wide default, and the image has none.
fn time_zones() -> &'static TimeZoneDatabase {
    static BUNDLED: std::sync::LazyLock<TimeZoneDatabase> =
        std::sync::LazyLock::new(TimeZoneDatabase::bundled);
    &BUNDLED
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 6),
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How many years past the start `next_after` searches, as robfig/cron's `Next` does.
const YEARS_AHEAD: i16 = 5;

/// Checks a schedule as the API server would, with a message that names the bad part.
pub fn check(schedule: &str) -> Result<()> {
    Spec::parse(schedule).map(|_| ())
}

/// A schedule read once, ready to say when it fires.
///
/// The five-field forms are evaluated on the wall clock of the schedule's time zone, to the
/// minute (second 0). Where daylight saving time changes the clock:
///
/// - A wall time that does not exist (clocks go forward, e.g. 02:30 on the last Sunday of March
///   in Europe/Berlin) fires once, at the first instant after the gap (03:00 CEST there): every
///   missing time of one gap fires at that same instant, once. Except when the hour field is
///   open (`*`, `?`, `*/1`): such a schedule fires every hour anyway, and the hour the clock
///   skips is skipped (`30 * * * *` fires at 01:30 CET, then 03:30 CEST).
/// - A wall time that happens twice (clocks go back, e.g. 02:30 on the last Sunday of October in
///   Europe/Berlin) fires once, at its first occurrence (02:30 CEST). The repeated hour's second
///   pass fires nothing, so `*/15 * * * *` is silent for that hour.
///
/// So a schedule never fires twice for one wall time, and a schedule at fixed hours (a nightly
/// backup) loses no run to a clock change. This is what Vixie cron does for fixed times, and
/// Python's croniter for gaps. Kubernetes' own CronJob controller (robfig/cron) differs: it
/// skips every firing that falls in a gap and fires twice in a repeated hour.
///
/// `@every D` counts whole seconds (less than a second counts as one, fractions are dropped, as
/// robfig/cron does) from the schedule's anchor, in absolute time: the time zone and daylight
/// saving time do not affect it.
#[derive(Clone, Debug)]
pub struct Schedule {
    spec: Spec,
    time_zone: TimeZone,
}

impl Schedule {
    /// Reads `schedule` (same syntax [`check`] accepts: 5 fields minute hour dom month dow with
    /// `*`, `?`, lists, ranges, steps, month/day names case-insensitive;
    /// `@yearly`/`@annually`/`@monthly`/`@weekly`/`@daily`/`@midnight`/`@hourly`;
    /// `@every <go duration>` such as `90s`, `1h30m`) in `time_zone` (an IANA name such as
    /// `"Europe/Berlin"`; `None` = UTC).
    ///
    /// An unknown time zone is an [`Error::Invalid`] that names it. The time zone database is
    /// compiled into the program, so the machine's `/usr/share/zoneinfo` plays no part.
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule> {
        let spec = Spec::parse(schedule)?;
        let time_zone = match time_zone {
            None => TimeZone::UTC,
            Some(name) => time_zones().get(name).map_err(|_| {
                Error::Invalid(format!(
                    "time zone {name:?} is unknown: use an IANA time zone name such as \
                     Europe/Berlin, America/New_York or UTC"
                ))
            })?,
        };
        Ok(Schedule { spec, time_zone })
    }

    /// The first firing strictly after `after`. `anchor` is when the schedule started (its
    /// object's creation time): "@every D" fires at anchor + k*D (k >= 1, the anchor taken to
    /// the whole second); the cron forms ignore it. None only when no firing exists within the
    /// next 5 years (e.g. "0 0 30 2 *").
    ///
    /// Daylight saving time is handled as the [type's documentation](Schedule) says.
    pub fn next_after(&self, after: Timestamp, anchor: Timestamp) -> Option<Timestamp> {
        match &self.spec {
            Spec::Every { seconds } => every_after(*seconds, after, anchor),
            Spec::Fields(fields) => self.fields_after(fields, after),
        }
    }

    /// The firings in (from, to], at most `limit` of them, oldest first; plus whether more were
    /// left out. Used to count missed firings after an operator was down.
    pub fn firings_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        anchor: Timestamp,
        limit: usize,
    ) -> (Vec<Timestamp>, bool) {
        let mut firings = Vec::new();
        let mut last = from;
        while let Some(next) = self.next_after(last, anchor)
            && next <= to
        {
            if firings.len() == limit {
                return (firings, true);
            }
            firings.push(next);
            last = next;
        }
        (firings, false)
    }

    fn fields_after(&self, fields: &Fields, after: Timestamp) -> Option<Timestamp> {
        // Wall times up to the wall clock's reading at `after` all resolve to `after` or
        // earlier (see `resolve`), so the search starts at the following minute. Later wall
        // times that resolve to `after` or before it (in the second pass of a repeated hour),
        // and missing ones that an every-hour schedule leaves out, are stepped over.
        let now = self.time_zone.to_datetime(after);
        let year_limit = now.year().checked_add(YEARS_AHEAD)?;
        let mut from = Civil {
            year: now.year(),
            month: now.month(),
            day: now.day(),
            hour: now.hour(),
            minute: now.minute() + 1,
        };
        loop {
            let wall = fields.first_from(from, year_limit)?;
            let (at, in_gap) = self.resolve(wall.to_datetime()?)?;
            if at > after && !(in_gap && fields.every_hour) {
                return Some(at);
            }
            from = Civil {
                minute: wall.minute + 1,
                ..wall
            };
        }
    }

    /// The instant at which wall time `wall` fires: its only instant; its first one when the
    /// clock shows it twice; the end of the gap when the clock skips it (and then `true`).
    fn resolve(&self, wall: DateTime) -> Option<(Timestamp, bool)> {
        match self.time_zone.to_ambiguous_timestamp(wall).offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                Some((offset.to_timestamp(wall).ok()?, false))
            }
            // The offset in force before the change gives the earlier of the two instants.
            AmbiguousOffset::Fold { before, .. } => Some((before.to_timestamp(wall).ok()?, false)),
            // Read with the later offset, the wall time is an instant before the change; the
            // change itself is the first instant after the gap.
            AmbiguousOffset::Gap { after, .. } => {
                let before_gap = after.to_timestamp(wall).ok()?;
                self.time_zone
                    .following(before_gap)
                    .next()
                    .map(|transition| (transition.timestamp(), true))
            }
        }
    }
}

/// `anchor + k * seconds` for the smallest `k >= 1` that lands after `after`.
fn every_after(seconds: i64, after: Timestamp, anchor: Timestamp) -> Option<Timestamp> {
    const NANOS: i128 = 1_000_000_000;
    let anchor = i128::from(anchor.as_second());
    let period = i128::from(seconds) * NANOS;
    let elapsed = after.as_nanosecond() - anchor * NANOS;
    let k = (elapsed.div_euclid(period) + 1).max(1);
    let at = anchor.checked_add(k.checked_mul(i128::from(seconds))?)?;
    Timestamp::from_second(i64::try_from(at).ok()?).ok()
}

/// A schedule as parsed, before a time zone is attached.
#[derive(Clone, Debug)]
enum Spec {
    /// `@every`: a period in whole seconds, at least one.
    Every { seconds: i64 },
    /// The five fields (the other descriptors are shorthands for them).
    Fields(Fields),
}

impl Spec {
    fn parse(schedule: &str) -> Result<Spec> {
        let bad = |why: String| {
            Error::Invalid(format!(
                "schedule {schedule:?} would be refused by Kubernetes: {why}. Use five fields \
                 (minute hour day-of-month month day-of-week), e.g. \"0 2 * * *\" for 02:00 every \
                 day"
            ))
        };
        let s = schedule.trim();
        if s.contains("TZ=") {
            return Err(bad(
                "a time zone belongs in --time-zone, not in the schedule".to_owned(),
            ));
        }
        if let Some(descriptor) = s.strip_prefix('@') {
            let fields = match descriptor {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                d if d.starts_with("every ") => {
                    let text = d["every ".len()..].trim();
                    return match go_duration(text) {
                        // robfig/cron rounds to whole seconds, and up to one second.
                        Some(nanos) if nanos > 0 => Ok(Spec::Every {
                            seconds: (nanos / 1_000_000_000).max(1),
                        }),
                        _ => Err(bad(format!(
                            "{text:?} is not a positive duration such as 1h30m"
                        ))),
                    };
                }
                d => return Err(bad(format!("unknown descriptor @{d}"))),
            };
            return Fields::parse(fields).map(Spec::Fields).map_err(bad);
        }
        Fields::parse(s).map(Spec::Fields).map_err(bad)
    }
}

/// The five fields as bit sets: bit `n` set when value `n` matches.
#[derive(Clone, Copy, Debug)]
struct Fields {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day of month or day of week left open (`*` or `?`): then a day must match both fields;
    /// when both are restricted, either one.
    any_day: bool,
    /// The hour field left open: wall times the clock skips are not fired late.
    every_hour: bool,
}

impl Fields {
    fn parse(text: &str) -> std::result::Result<Fields, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!("it has {} fields, not 5", fields.len()));
        }
        let mut sets = [(0u64, false); 5];
        for ((set, text), (name, min, max)) in sets.iter_mut().zip(&fields).zip(FIELDS) {
            *set = field(text, name, min, max)?;
        }
        let [minutes, hours, days, months, weekdays] = sets;
        Ok(Fields {
            minutes: minutes.0,
            hours: hours.0,
            days: days.0,
            months: months.0,
            weekdays: weekdays.0,
            any_day: days.1 || weekdays.1,
            every_hour: hours.1,
        })
    }

    /// The first wall time at or after `from` that the fields match, skipping whole months,
    /// days and hours that cannot. `from` may be denormal (minute 60, hour 24, day 32); it is
    /// carried over as the search goes. `None` past `year_limit`.
    fn first_from(&self, from: Civil, year_limit: i16) -> Option<Civil> {
        let Civil {
            mut year,
            mut month,
            mut day,
            mut hour,
            mut minute,
        } = from;
        loop {
            if month > 12 {
                (year, month) = (year + 1, 1);
            }
            if year > year_limit {
                return None;
            }
            let Some(m) = next_bit(self.months, month) else {
                (month, day, hour, minute) = (13, 1, 0, 0);
                continue;
            };
            if m != month {
                (month, day, hour, minute) = (m, 1, 0, 0);
            }
            let last_day = days_in_month(year, month)?;
            let Some(d) = (day..=last_day).find(|&d| self.day_matches(year, month, d)) else {
                (month, day, hour, minute) = (month + 1, 1, 0, 0);
                continue;
            };
            if d != day {
                (day, hour, minute) = (d, 0, 0);
            }
            let Some(h) = next_bit(self.hours, hour) else {
                (day, hour, minute) = (day + 1, 0, 0);
                continue;
            };
            if h != hour {
                (hour, minute) = (h, 0);
            }
            let Some(m) = next_bit(self.minutes, minute) else {
                (hour, minute) = (hour + 1, 0);
                continue;
            };
            return Some(Civil {
                year,
                month,
                day,
                hour,
                minute: m,
            });
        }
    }

    fn day_matches(&self, year: i16, month: i8, day: i8) -> bool {
        let by_date = self.days & (1 << day) != 0;
        // Computing the weekday costs more than the rest; skip it when it cannot matter.
        if self.any_day && !by_date {
            return false;
        }
        if !self.any_day && by_date {
            return true;
        }
        let Ok(date) = Date::new(year, month, day) else {
            return false;
        };
        let by_weekday = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.any_day {
            by_date && by_weekday
        } else {
            by_date || by_weekday
        }
    }
}

/// A wall-clock minute, possibly denormal while a search carries over.
#[derive(Clone, Copy, Debug)]
struct Civil {
    year: i16,
    month: i8,
    day: i8,
    hour: i8,
    minute: i8,
}

impl Civil {
    fn to_datetime(self) -> Option<DateTime> {
        DateTime::new(
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            0,
            0,
        )
        .ok()
    }
}

/// The smallest set bit of `set` at `from` or above.
fn next_bit(set: u64, from: i8) -> Option<i8> {
    let from = u32::try_from(from).ok()?;
    let above = set.checked_shr(from)?;
    // trailing_zeros is below 64 here, so the sum is at most 63.
    (above != 0).then(|| (from + above.trailing_zeros()) as i8)
}

fn days_in_month(year: i16, month: i8) -> Option<i8> {
    Date::new(year, month, 1).ok().map(|d| d.days_in_month())
}

/// One field's bit set, and whether it leaves the field open (`*` or `?` with no step above
/// one, as robfig/cron decides it for the day-of-month/day-of-week rule, in any part of a list).
fn field(text: &str, name: &str, min: u32, max: u32) -> std::result::Result<(u64, bool), String> {
    let mut set = 0u64;
    let mut open = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let stepped = step.is_some();
        let step = match step {
            None => 1,
            Some(step) => match step.parse::<u32>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("the {name} step {step:?} is not a positive number")),
            },
        };
        let (lo, hi) = if range == "*" || range == "?" {
            open |= step == 1;
            (min, max)
        } else {
            match range.split_once('-') {
                Some((a, b)) => (value(a, name, min, max)?, value(b, name, min, max)?),
                // "N/step" runs from N to the field's maximum.
                None if stepped => (value(range, name, min, max)?, max),
                None => {
                    let v = value(range, name, min, max)?;
                    (v, v)
                }
            }
        };
        if hi < lo {
            return Err(format!("the {name} range {range:?} runs backwards"));
        }
        set |= (lo..=hi).step_by(step as usize).fold(0, |s, v| s | 1 << v);
    }
    Ok((set, open))
}

fn value(text: &str, name: &str, min: u32, max: u32) -> std::result::Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let named = match name {
        "month" => MONTHS
            .iter()
            .position(|m| *m == lower)
            .map(|i| i as u32 + 1),
        "day of week" => DAYS.iter().position(|d| *d == lower).map(|i| i as u32),
        _ => None,
    };
    let v = match named {
        Some(v) => v,
        None => text
            .parse::<u32>()
            .map_err(|_| format!("{text:?} is not a valid {name}"))?,
    };
    if v < min || v > max {
        return Err(format!("{name} {v} is outside {min}-{max}"));
    }
    Ok(v)
}

/// Nanoseconds of a Go duration (`1h30m`, `90s`, `1.5h`), `None` if it is not one or is longer
/// than Go allows (about 292 years).
fn go_duration(text: &str) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (whole, fraction) = rest[..num_len]
            .split_once('.')
            .unwrap_or((&rest[..num_len], ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return None;
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        total = total.checked_add(whole.checked_mul(unit)?)?;
        // Digits past nanosecond precision of the largest unit cannot change the result.
        let fraction = &fraction[..fraction.len().min(20)];
        if !fraction.is_empty() {
            let scale = 10u128.pow(fraction.len() as u32);
            total = total.checked_add(fraction.parse::<u128>().ok()? * unit / scale)?;
        }
    }
    i64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_kubernetes_accepts() {
        for ok in [
            "0 2 * * *",
            "*/15 * * * *",
            "0 0 1,15 * *",
            "30 4 * jan-mar MON-FRI",
            "0 22 * * 1-5",
            "5/10 * ? * *",
            "@daily",
            "@hourly",
            "@every 1h30m",
            "0 0 29 2 *",
        ] {
            check(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn refuses_what_kubernetes_refuses() {
        for bad in [
            "",
            "* * * *",
            "0 0 * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "@fortnightly",
            "@every 0s",
            "@every soon",
            "TZ=UTC 0 2 * * *",
            "0 2 * foo *",
        ] {
            let err = check(bad).unwrap_err().to_string();
            assert!(err.contains("would be refused"), "{bad}: {err}");
        }
    }

    fn ts(text: &str) -> Timestamp {
        text.parse()
            .unwrap_or_else(|e| panic!("{text} is not a timestamp: {e}"))
    }

    /// The next `n` firings after `after`, as RFC 3339 in UTC.
    fn fire(schedule: &str, zone: Option<&str>, after: &str, n: usize) -> Vec<String> {
        let s = Schedule::parse(schedule, zone).unwrap();
        let anchor = ts("2000-01-01T00:00:00Z");
        let mut t = ts(after);
        (0..n)
            .map(|_| {
                t = s.next_after(t, anchor).expect("a firing");
                t.to_string()
            })
            .collect()
    }

    #[test]
    fn time_zone_database_is_the_compiled_in_one() {
        // Not the machine's /usr/share/zoneinfo: the image has none, and a machine's copy could
        // be older or newer than the one the tests ran with.
        assert_eq!(
            format!("{:?}", time_zones()),
            "TimeZoneDatabase(Bundled(available))"
        );
        let berlin = time_zones().get("Europe/Berlin").unwrap();
        assert_eq!(berlin.iana_name(), Some("Europe/Berlin"));
    }

    #[test]
    fn unknown_time_zone_is_named() {
        let err = Schedule::parse("0 2 * * *", Some("Europe/Atlantis"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"Europe/Atlantis\""), "{err}");
        assert!(
            err.contains("IANA") && err.contains("Europe/Berlin"),
            "{err}"
        );
    }

    #[test]
    fn bad_schedule_with_a_time_zone_names_the_schedule() {
        let err = Schedule::parse("0 25 * * *", Some("UTC"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"0 25 * * *\"") && err.contains("hour 25"),
            "{err}"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // 2024-06: the 1st is a Saturday; Mondays are the 3rd, 10th, 17th, 24th.
        assert_eq!(
            fire("0 0 13 * 1", None, "2024-06-01T12:00:00Z", 4),
            [
                "2024-06-03T00:00:00Z",
                "2024-06-10T00:00:00Z",
                "2024-06-13T00:00:00Z",
                "2024-06-17T00:00:00Z"
            ]
        );
        // A stepped star restricts the field (robfig/cron: the star bit goes with a step > 1).
        assert_eq!(
            fire("0 0 */10 * mon", None, "2024-06-01T12:00:00Z", 4),
            [
                "2024-06-03T00:00:00Z",
                "2024-06-10T00:00:00Z",
                "2024-06-11T00:00:00Z",
                "2024-06-17T00:00:00Z"
            ]
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_when_one_is_open() {
        // Fridays only, whatever the date.
        assert_eq!(
            fire("0 0 * * 5", None, "2024-06-01T00:00:00Z", 2),
            ["2024-06-07T00:00:00Z", "2024-06-14T00:00:00Z"]
        );
        // The 13th only, whatever the weekday: `?` is open like `*`.
        assert_eq!(
            fire("0 0 13 * ?", None, "2024-06-01T00:00:00Z", 2),
            ["2024-06-13T00:00:00Z", "2024-07-13T00:00:00Z"]
        );
        // Friday the 13th cannot be asked for: with both restricted either one matches.
        assert_eq!(
            fire("0 0 13 * 5", None, "2024-06-10T00:00:00Z", 2),
            ["2024-06-13T00:00:00Z", "2024-06-14T00:00:00Z"]
        );
    }

    #[test]
    fn steps_run_from_their_start_to_the_field_maximum() {
        assert_eq!(
            fire("5/20 * * * *", None, "2024-06-01T10:00:00Z", 4),
            [
                "2024-06-01T10:05:00Z",
                "2024-06-01T10:25:00Z",
                "2024-06-01T10:45:00Z",
                "2024-06-01T11:05:00Z"
            ]
        );
        assert_eq!(
            fire("*/25 * * * *", None, "2024-06-01T10:00:00Z", 4),
            [
                "2024-06-01T10:25:00Z",
                "2024-06-01T10:50:00Z",
                "2024-06-01T11:00:00Z",
                "2024-06-01T11:25:00Z"
            ]
        );
        assert_eq!(
            fire("0 9-17/4 * * *", None, "2024-06-01T10:00:00Z", 3),
            [
                "2024-06-01T13:00:00Z",
                "2024-06-01T17:00:00Z",
                "2024-06-02T09:00:00Z"
            ]
        );
        // Days of month from the 20th, every 5: 20, 25, 30 (not in February).
        assert_eq!(
            fire("0 0 20/5 * *", None, "2024-02-21T00:00:00Z", 3),
            [
                "2024-02-25T00:00:00Z",
                "2024-03-20T00:00:00Z",
                "2024-03-25T00:00:00Z"
            ]
        );
    }

    #[test]
    fn names_ignore_case_and_lists_mix_with_ranges() {
        // 2024-01-01 is a Monday.
        assert_eq!(
            fire(
                "30 4 * JAN-mar Mon-wed,FRI",
                None,
                "2024-01-01T05:00:00Z",
                4
            ),
            [
                "2024-01-02T04:30:00Z",
                "2024-01-03T04:30:00Z",
                "2024-01-05T04:30:00Z",
                "2024-01-08T04:30:00Z"
            ]
        );
        assert_eq!(
            fire("0 0 1 apr,Oct *", None, "2024-05-01T00:00:00Z", 2),
            ["2024-10-01T00:00:00Z", "2025-04-01T00:00:00Z"]
        );
    }

    #[test]
    fn descriptors_are_their_five_fields() {
        let after = "2024-06-01T10:30:00Z";
        for (descriptor, next) in [
            ("@yearly", "2025-01-01T00:00:00Z"),
            ("@annually", "2025-01-01T00:00:00Z"),
            ("@monthly", "2024-07-01T00:00:00Z"),
            // 2024-06-01 is a Saturday.
            ("@weekly", "2024-06-02T00:00:00Z"),
            ("@daily", "2024-06-02T00:00:00Z"),
            ("@midnight", "2024-06-02T00:00:00Z"),
            ("@hourly", "2024-06-01T11:00:00Z"),
        ] {
            assert_eq!(fire(descriptor, None, after, 1), [next], "{descriptor}");
        }
    }

    #[test]
    fn next_is_strictly_after_and_on_the_minute() {
        assert_eq!(
            fire("* * * * *", None, "2024-06-01T10:00:00Z", 2),
            ["2024-06-01T10:01:00Z", "2024-06-01T10:02:00Z"]
        );
        assert_eq!(
            fire("* * * * *", None, "2024-06-01T10:00:59.999Z", 1),
            ["2024-06-01T10:01:00Z"]
        );
        // Across the end of a year.
        assert_eq!(
            fire("59 23 31 12 *", None, "2024-12-31T23:59:00Z", 1),
            ["2025-12-31T23:59:00Z"]
        );
    }

    #[test]
    fn every_counts_from_the_anchor() {
        let s = Schedule::parse("@every 1h30m", Some("Europe/Berlin")).unwrap();
        let anchor = ts("2024-06-01T10:00:00Z");
        // Before the anchor and at it: the first firing is anchor + D.
        for after in ["2024-05-01T00:00:00Z", "2024-06-01T10:00:00Z"] {
            assert_eq!(
                s.next_after(ts(after), anchor),
                Some(ts("2024-06-01T11:30:00Z"))
            );
        }
        assert_eq!(
            s.next_after(ts("2024-06-01T11:30:00Z"), anchor),
            Some(ts("2024-06-01T13:00:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2024-06-02T00:00:01Z"), anchor),
            Some(ts("2024-06-02T01:00:00Z"))
        );
        // Daylight saving time does not stretch it: 2024-10-27 in Berlin.
        assert_eq!(
            s.next_after(ts("2024-10-27T00:00:00Z"), ts("2024-10-26T23:00:00Z")),
            Some(ts("2024-10-27T00:30:00Z"))
        );
    }

    #[test]
    fn every_keeps_whole_seconds() {
        let anchor = ts("2024-06-01T10:00:00.750Z");
        for (text, next) in [
            ("@every 90s", "2024-06-01T10:01:30Z"),
            ("@every 1.5s", "2024-06-01T10:00:01Z"),
            ("@every 500ms", "2024-06-01T10:00:01Z"),
            ("@every .5h", "2024-06-01T10:30:00Z"),
            ("@every 1h0m0.9s", "2024-06-01T11:00:00Z"),
        ] {
            let s = Schedule::parse(text, None).unwrap();
            assert_eq!(s.next_after(anchor, anchor), Some(ts(next)), "{text}");
        }
    }

    #[test]
    fn spring_forward_gap_fires_fixed_hours_once_at_its_end() {
        // Berlin, 2024-03-31: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        assert_eq!(
            fire(
                "30 2 * * *",
                Some("Europe/Berlin"),
                "2024-03-29T12:00:00Z",
                3
            ),
            [
                "2024-03-30T01:30:00Z", // 02:30 CET
                "2024-03-31T01:00:00Z", // 03:00 CEST, the first instant after the gap
                "2024-04-01T00:30:00Z"  // 02:30 CEST
            ]
        );
        // Every minute of the gap maps to one instant, fired once.
        assert_eq!(
            fire(
                "*/20 2 * * *",
                Some("Europe/Berlin"),
                "2024-03-29T12:00:00Z",
                3
            ),
            [
                "2024-03-30T01:00:00Z", // 02:00 CET on the day before
                "2024-03-30T01:20:00Z",
                "2024-03-30T01:40:00Z"
            ]
        );
        assert_eq!(
            fire(
                "*/20 2 * * *",
                Some("Europe/Berlin"),
                "2024-03-30T01:40:00Z",
                2
            ),
            ["2024-03-31T01:00:00Z", "2024-04-01T00:00:00Z"]
        );
        // An open hour field skips the hour the clock skips.
        assert_eq!(
            fire(
                "30 * * * *",
                Some("Europe/Berlin"),
                "2024-03-31T00:00:00Z",
                2
            ),
            ["2024-03-31T00:30:00Z", "2024-03-31T01:30:00Z"]
        );
        assert_eq!(
            fire(
                "*/20 * * * *",
                Some("Europe/Berlin"),
                "2024-03-31T00:30:00Z",
                3
            ),
            [
                "2024-03-31T00:40:00Z", // 01:40 CET
                "2024-03-31T01:00:00Z", // 03:00 CEST
                "2024-03-31T01:20:00Z"  // 03:20 CEST
            ]
        );
        // Fixed hours through the gap: 02:00 and 03:00 CEST are the same instant, fired once.
        assert_eq!(
            fire(
                "0 1-3 * * *",
                Some("Europe/Berlin"),
                "2024-03-30T23:30:00Z",
                3
            ),
            [
                "2024-03-31T00:00:00Z", // 01:00 CET
                "2024-03-31T01:00:00Z", // 03:00 CEST, for 02:00 and for 03:00
                "2024-03-31T23:00:00Z"  // 01:00 CEST
            ]
        );
        // New York, 2024-03-10: 02:00 EST becomes 03:00 EDT (07:00 UTC).
        assert_eq!(
            fire(
                "15 2 * * *",
                Some("America/New_York"),
                "2024-03-09T12:00:00Z",
                3
            ),
            [
                "2024-03-10T07:00:00Z",
                "2024-03-11T06:15:00Z",
                "2024-03-12T06:15:00Z"
            ]
        );
    }

    #[test]
    fn fall_back_fold_fires_once_at_the_first_occurrence() {
        // Berlin, 2024-10-27: 03:00 CEST becomes 02:00 CET; 02:00-02:59 comes twice.
        assert_eq!(
            fire(
                "30 2 * * *",
                Some("Europe/Berlin"),
                "2024-10-26T12:00:00Z",
                2
            ),
            ["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"]
        );
        // Asked from inside the second pass, the repeated time does not fire again.
        assert_eq!(
            fire(
                "30 2 * * *",
                Some("Europe/Berlin"),
                "2024-10-27T01:10:00Z",
                1
            ),
            ["2024-10-28T01:30:00Z"]
        );
        // An hourly schedule skips the second pass: 02:00 CEST, then 03:00 CET.
        assert_eq!(
            fire(
                "0 * * * *",
                Some("Europe/Berlin"),
                "2024-10-26T23:30:00Z",
                3
            ),
            [
                "2024-10-27T00:00:00Z",
                "2024-10-27T02:00:00Z",
                "2024-10-27T03:00:00Z"
            ]
        );
        // New York, 2024-11-03: 02:00 EDT becomes 01:00 EST; 01:00-01:59 comes twice.
        assert_eq!(
            fire(
                "30 1 * * *",
                Some("America/New_York"),
                "2024-11-03T04:00:00Z",
                2
            ),
            ["2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"]
        );
        assert_eq!(
            fire(
                "*/30 * * * *",
                Some("America/New_York"),
                "2024-11-03T05:10:00Z",
                3
            ),
            [
                "2024-11-03T05:30:00Z", // 01:30 EDT
                "2024-11-03T07:00:00Z", // 02:00 EST; 01:00 and 01:30 EST are repeats
                "2024-11-03T07:30:00Z"
            ]
        );
    }

    #[test]
    fn leap_day_waits_for_the_next_leap_year() {
        assert_eq!(
            fire("0 0 29 2 *", None, "2024-03-01T00:00:00Z", 2),
            ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]
        );
        // 2100 is no leap year, and 2104 is more than five years after 2097.
        let s = Schedule::parse("0 0 29 2 *", None).unwrap();
        assert_eq!(
            s.next_after(ts("2097-03-01T00:00:00Z"), ts("2097-03-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn impossible_dates_never_fire() {
        let s = Schedule::parse("0 0 30 2 *", Some("Asia/Kolkata")).unwrap();
        let t = ts("2024-01-01T00:00:00Z");
        assert_eq!(s.next_after(t, t), None);
        assert_eq!(
            s.firings_between(t, ts("2034-01-01T00:00:00Z"), t, 10),
            (vec![], false)
        );
    }

    #[test]
    fn firings_between_stops_at_the_limit_and_says_so() {
        let s = Schedule::parse("0 * * * *", None).unwrap();
        let anchor = ts("2024-01-01T00:00:00Z");
        let from = ts("2024-06-01T10:00:00Z");
        let to = ts("2024-06-01T14:00:00Z");
        let at = |hours: &[u32]| -> Vec<Timestamp> {
            hours
                .iter()
                .map(|h| ts(&format!("2024-06-01T{h:02}:00:00Z")))
                .collect()
        };
        // (from, to]: 10:00 is out, 14:00 is in.
        assert_eq!(
            s.firings_between(from, to, anchor, 10),
            (at(&[11, 12, 13, 14]), false)
        );
        assert_eq!(
            s.firings_between(from, to, anchor, 4),
            (at(&[11, 12, 13, 14]), false)
        );
        assert_eq!(
            s.firings_between(from, to, anchor, 2),
            (at(&[11, 12]), true)
        );
        assert_eq!(s.firings_between(from, to, anchor, 0), (vec![], true));
        assert_eq!(s.firings_between(to, from, anchor, 10), (vec![], false));

        let every = Schedule::parse("@every 45m", None).unwrap();
        let anchor = ts("2024-06-01T09:30:00Z");
        assert_eq!(
            every.firings_between(from, to, anchor, 100),
            (
                ["10:15", "11:00", "11:45", "12:30", "13:15", "14:00"]
                    .iter()
                    .map(|hm| ts(&format!("2024-06-01T{hm}:00Z")))
                    .collect(),
                false
            )
        );
    }

    #[test]
    fn next_after_is_quick() {
        // The operator evaluates every schedule on each pass; a thousand must take far less
        // than a second even in a debug build.
        let schedules: Vec<Schedule> = [
            "*/5 * * * *",
            "0 2 * * *",
            "30 4 * * mon-fri",
            "0 0 1 * *",
            "@yearly",
            "0 0 29 2 *",
            "0 0 13 * 5",
            "@every 1h30m",
        ]
        .iter()
        .map(|s| Schedule::parse(s, Some("Europe/Berlin")).unwrap())
        .collect();
        let anchor = ts("2024-01-01T00:00:00Z");
        let after = ts("2024-03-01T12:34:56Z");
        let started = std::time::Instant::now();
        for _ in 0..125 {
            for s in &schedules {
                assert!(s.next_after(after, anchor).is_some());
            }
        }
        let per_call = started.elapsed() / 1000;
        assert!(
            per_call < std::time::Duration::from_micros(100),
            "next_after took {per_call:?} a call"
        );
    }
}
