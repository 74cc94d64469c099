//! Which snapshots to keep: the usual keep-last / hourly / daily / weekly / monthly rules.
//!
//! Snapshots are taken newest first. `last N` keeps the N newest. `hourly N` keeps the newest
//! snapshot of each of the N most recent hours that have one; likewise `daily` (calendar days,
//! UTC), `weekly` (ISO weeks, Monday to Sunday) and `monthly` (calendar months). A snapshot kept
//! by any rule is kept. The newest snapshot is always kept, whatever the rules say, and with no
//! rule at all every snapshot is kept.

use std::collections::BTreeSet;

/// The retention rules; `None` means the rule is not used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep the N newest snapshots.
    pub last: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent hours.
    pub hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent days.
    pub daily: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent ISO weeks.
    pub weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N most recent months.
    pub monthly: Option<u32>,
}

impl Policy {
    /// Whether any rule is set.
    pub fn is_set(&self) -> bool {
        self.last.is_some()
            || self.hourly.is_some()
            || self.daily.is_some()
            || self.weekly.is_some()
            || self.monthly.is_some()
    }
}

/// A UTC civil time, as snapshots are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Civil {
    /// Year.
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u32,
    /// Day of the month, 1 to 31.
    pub day: u32,
    /// Hour, 0 to 23.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
}

impl Civil {
    /// Days since 1970-01-01 (proleptic Gregorian).
    pub fn days(&self) -> i64 {
        let (y, m) = if self.month <= 2 {
            (i64::from(self.year) - 1, i64::from(self.month) + 9)
        } else {
            (i64::from(self.year), i64::from(self.month) - 3)
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The ISO week (year, week number) this day belongs to.
    pub fn iso_week(&self) -> (i32, u32) {
        let days = self.days();
        // 1970-01-01 was a Thursday; ISO weekday 1 = Monday.
        let weekday = (days + 3).rem_euclid(7) + 1;
        let thursday = days - weekday + 4;
        let year_of_thursday = civil_from_days(thursday).0;
        let jan1 = Civil {
            year: year_of_thursday,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
        };
        let week = (thursday - jan1.days()) / 7 + 1;
        (year_of_thursday, week as u32)
    }
}

/// The civil date (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's
/// algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// The indexes (into `times`, sorted newest first) of the snapshots to keep.
pub fn keep(times: &[Civil], policy: &Policy) -> BTreeSet<usize> {
    let mut kept = BTreeSet::new();
    if times.is_empty() {
        return kept;
    }
    if !policy.is_set() {
        return (0..times.len()).collect();
    }
    kept.insert(0);
    if let Some(n) = policy.last {
        kept.extend(0..(n as usize).min(times.len()));
    }
    let mut by_bucket = |n: Option<u32>, bucket: &dyn Fn(&Civil) -> (i64, i64)| {
        let Some(n) = n else { return };
        let mut seen = Vec::new();
        for (i, t) in times.iter().enumerate() {
            if seen.len() >= n as usize {
                break;
            }
            let b = bucket(t);
            if !seen.contains(&b) {
                seen.push(b);
                kept.insert(i);
            }
        }
    };
    by_bucket(policy.hourly, &|t| (t.days(), i64::from(t.hour)));
    by_bucket(policy.daily, &|t| (t.days(), 0));
    by_bucket(policy.weekly, &|t| {
        let (y, w) = t.iso_week();
        (i64::from(y), i64::from(w))
    });
    by_bucket(policy.monthly, &|t| (i64::from(t.year), i64::from(t.month)));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Civil {
        // "YYYY-MM-DD HH"
        let n = |a: usize, b: usize| s[a..b].parse().unwrap();
        Civil {
            year: n(0, 4) as i32,
            month: n(5, 7),
            day: n(8, 10),
            hour: n(11, 13),
            minute: 0,
            second: 0,
        }
    }

    fn kept(times: &[&'static str], p: Policy) -> Vec<&'static str> {
        let parsed: Vec<Civil> = times.iter().map(|s| t(s)).collect();
        let k = keep(&parsed, &p);
        (0..times.len())
            .filter(|i| k.contains(i))
            .map(|i| times[i])
            .collect()
    }

    // Newest first, as the snapshots folder lists them.
    const TIMES: [&str; 10] = [
        "2026-11-25 02",
        "2026-11-25 01",
        "2026-11-24 23",
        "2026-11-24 02",
        "2026-11-23 02",
        "2026-11-16 02",
        "2026-11-09 02",
        "2026-10-31 02",
        "2026-10-01 02",
        "2026-09-15 02",
    ];

    #[test]
    fn no_rule_keeps_everything() {
        assert_eq!(kept(&TIMES, Policy::default()).len(), 10);
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let p = Policy {
            last: Some(3),
            ..Policy::default()
        };
        assert_eq!(
            kept(&TIMES, p),
            ["2026-11-25 02", "2026-11-25 01", "2026-11-24 23"]
        );
    }

    #[test]
    fn keep_hourly_keeps_one_per_hour() {
        let p = Policy {
            hourly: Some(2),
            ..Policy::default()
        };
        assert_eq!(kept(&TIMES, p), ["2026-11-25 02", "2026-11-25 01"]);
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_day() {
        let p = Policy {
            daily: Some(3),
            ..Policy::default()
        };
        assert_eq!(
            kept(&TIMES, p),
            ["2026-11-25 02", "2026-11-24 23", "2026-11-23 02"]
        );
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        // 2026-11-23 is a Monday: 23..25 are one week, 16 and 9 the two before.
        let p = Policy {
            weekly: Some(3),
            ..Policy::default()
        };
        assert_eq!(
            kept(&TIMES, p),
            ["2026-11-25 02", "2026-11-16 02", "2026-11-09 02"]
        );
    }

    #[test]
    fn keep_monthly_keeps_the_newest_of_each_month() {
        let p = Policy {
            monthly: Some(3),
            ..Policy::default()
        };
        assert_eq!(
            kept(&TIMES, p),
            ["2026-11-25 02", "2026-10-31 02", "2026-09-15 02"]
        );
    }

    #[test]
    fn rules_add_up() {
        let p = Policy {
            last: Some(1),
            monthly: Some(2),
            ..Policy::default()
        };
        assert_eq!(kept(&TIMES, p), ["2026-11-25 02", "2026-10-31 02"]);
    }

    #[test]
    fn the_newest_is_kept_even_with_zero_counts() {
        let p = Policy {
            last: Some(0),
            daily: Some(0),
            ..Policy::default()
        };
        assert_eq!(kept(&TIMES, p), ["2026-11-25 02"]);
    }

    #[test]
    fn iso_weeks_match_known_dates() {
        // `date -d 2026-11-25 +%G-%V` and `date -d 2021-01-03 +%G-%V`.
        assert_eq!(t("2026-11-25 00").iso_week(), (2026, 48));
        assert_eq!(t("2021-01-03 00").iso_week(), (2020, 53));
        assert_eq!(t("2026-01-01 00").iso_week(), (2026, 1));
    }
}
