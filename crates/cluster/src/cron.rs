//! Cron expressions as a CronJob's `schedule` accepts them, checked before anything is created.
//!
//! Kubernetes parses schedules with the standard five-field parser of robfig/cron: minute, hour,
//! day of month, month, day of week; `*`, `?`, lists, ranges and steps; month and weekday names;
//! and the descriptors `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`),
//! `@hourly` and `@every DURATION`. A time zone goes in the CronJob's `timeZone` field, never in
//! the schedule (`TZ=` and `CRON_TZ=` are refused).

use crate::{Error, Result};

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

/// Checks a schedule as the API server would, with a message that names the bad part.
pub fn check(schedule: &str) -> Result<()> {
    let bad = |why: String| {
        Err(Error::Invalid(format!(
            "schedule {schedule:?} would be refused by Kubernetes: {why}. Use five fields \
             (minute hour day-of-month month day-of-week), e.g. \"0 2 * * *\" for 02:00 every day"
        )))
    };
    let s = schedule.trim();
    if s.contains("TZ=") {
        return bad("a time zone belongs in --time-zone, not in the schedule".to_owned());
    }
    if let Some(descriptor) = s.strip_prefix('@') {
        return match descriptor {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            d if d.starts_with("every ") => match go_duration(d["every ".len()..].trim()) {
                Some(secs) if secs > 0.0 => Ok(()),
                _ => bad(format!(
                    "{:?} is not a positive duration such as 1h30m",
                    &d[6..]
                )),
            },
            d => bad(format!("unknown descriptor @{d}")),
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return bad(format!("it has {} fields, not 5", fields.len()));
    }
    for (text, (name, min, max)) in fields.iter().zip(FIELDS) {
        if let Err(why) = check_field(text, name, min, max) {
            return bad(why);
        }
    }
    Ok(())
}

fn check_field(text: &str, name: &str, min: u32, max: u32) -> std::result::Result<(), String> {
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(0) | Err(_) => {
                    return Err(format!("the {name} step {step:?} is not a positive number"));
                }
                Ok(_) => {}
            }
        }
        if range == "*" || range == "?" {
            continue;
        }
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (value(a, name, min, max)?, Some(value(b, name, min, max)?)),
            None => (value(range, name, min, max)?, None),
        };
        if let Some(hi) = hi
            && hi < lo
        {
            return Err(format!("the {name} range {range:?} runs backwards"));
        }
    }
    Ok(())
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

/// Seconds of a Go duration (`1h30m`, `90s`, `1.5h`), `None` if it is not one.
fn go_duration(text: &str) -> Option<f64> {
    if text.is_empty() {
        return None;
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    Some(total)
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
}
