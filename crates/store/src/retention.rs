//! Which snapshots to keep: the usual keep-last / hourly / daily / weekly / monthly rules.
//!
//! Snapshots are taken newest first. `last N` keeps the N newest. `hourly N` keeps the newest
//! snapshot of each of the N most recent hours that have one; likewise `daily` (calendar days,
//! UTC), `weekly` (ISO weeks, Monday to Sunday) and `monthly` (calendar months). A snapshot kept
//! by any rule is kept. The newest snapshot is always kept, whatever the rules say, and with no
//! rule at all every snapshot is kept.

use std::collections::BTreeSet;

use crate::SnapshotId;

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

/// The indexes (into `ids`, sorted newest first) of the snapshots to keep.
pub fn keep(ids: &[SnapshotId], policy: &Policy) -> BTreeSet<usize> {
    let mut kept = BTreeSet::new();
    if ids.is_empty() {
        return kept;
    }
    if !policy.is_set() {
        return (0..ids.len()).collect();
    }
    kept.insert(0);
    if let Some(n) = policy.last {
        kept.extend(0..(n as usize).min(ids.len()));
    }
    let mut by_bucket = |n: Option<u32>, bucket: &dyn Fn(&SnapshotId) -> (i16, i16, i8)| {
        let Some(n) = n else { return };
        let mut seen = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if seen.len() >= n as usize {
                break;
            }
            let b = bucket(id);
            if !seen.contains(&b) {
                seen.push(b);
                kept.insert(i);
            }
        }
    };
    by_bucket(policy.hourly, &|id| {
        let t = id.civil();
        (t.year(), t.day_of_year(), t.hour())
    });
    by_bucket(policy.daily, &|id| {
        let t = id.civil();
        (t.year(), t.day_of_year(), 0)
    });
    by_bucket(policy.weekly, &|id| {
        let (year, week) = iso_week(id);
        (year, i16::from(week), 0)
    });
    by_bucket(policy.monthly, &|id| {
        let t = id.civil();
        (t.year(), i16::from(t.month()), 0)
    });
    kept
}

/// The ISO week (year, week number) of a snapshot.
fn iso_week(id: &SnapshotId) -> (i16, i8) {
    let w = id.civil().date().iso_week_date();
    (w.year(), w.week())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> SnapshotId {
        // "YYYY-MM-DD HH"
        SnapshotId::parse(&format!("{}T{}-00-00Z", &s[..10], &s[11..13])).unwrap()
    }

    fn kept(times: &[&'static str], p: Policy) -> Vec<&'static str> {
        let parsed: Vec<SnapshotId> = times.iter().map(|s| t(s)).collect();
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
    fn nothing_to_keep_of_nothing() {
        let p = Policy {
            last: Some(3),
            ..Policy::default()
        };
        assert!(keep(&[], &p).is_empty());
        assert!(keep(&[], &Policy::default()).is_empty());
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
    fn keep_hourly_tells_the_same_hour_of_two_days_apart() {
        let p = Policy {
            hourly: Some(3),
            ..Policy::default()
        };
        let times = ["2026-11-25 02", "2026-11-24 02", "2025-11-25 02"];
        assert_eq!(kept(&times, p), times);
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
    fn keep_daily_tells_the_same_day_of_two_years_apart() {
        let p = Policy {
            daily: Some(2),
            ..Policy::default()
        };
        let times = ["2026-03-01 02", "2025-03-01 02"];
        assert_eq!(kept(&times, p), times);
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
    fn keep_weekly_spans_a_year_end() {
        // 2021-01-03 (a Sunday) and 2020-12-28 (a Monday) are both in ISO week 2020-W53;
        // 2020-12-27 (a Sunday) is in 2020-W52, and 2021-01-04 (a Monday) starts 2021-W01.
        let p = Policy {
            weekly: Some(3),
            ..Policy::default()
        };
        let times = [
            "2021-01-04 02",
            "2021-01-03 02",
            "2020-12-28 02",
            "2020-12-27 02",
        ];
        assert_eq!(
            kept(&times, p),
            ["2021-01-04 02", "2021-01-03 02", "2020-12-27 02"]
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
        // `date -d 2026-11-25 +%G-%V` and the like.
        assert_eq!(iso_week(&t("2026-11-25 00")), (2026, 48));
        assert_eq!(iso_week(&t("2021-01-03 00")), (2020, 53));
        assert_eq!(iso_week(&t("2026-01-01 00")), (2026, 1));
        assert_eq!(iso_week(&t("2024-12-30 00")), (2025, 1));
        assert_eq!(iso_week(&t("2027-01-01 00")), (2026, 53));
    }
}
