//! CronJob schedules checked as Kubernetes checks them (robfig/cron's standard parser: five
//! fields, `@hourly`-style descriptors, `@every DURATION`; no seconds field, no time zone prefix).

/// Checks a schedule; the error is the text the API server puts after `Invalid value`.
pub fn validate(schedule: &str) -> Result<(), String> {
    let sched = schedule.trim();
    if sched.is_empty() {
        return Err("empty spec string".into());
    }
    if sched.starts_with("TZ=") || sched.starts_with("CRON_TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if let Some(d) = sched.strip_prefix('@') {
        return match d {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => match d.strip_prefix("every ") {
                Some(dur) if go_duration(dur.trim()) => Ok(()),
                Some(dur) => Err(format!(
                    "failed to parse duration @every {dur}: time: invalid duration {dur:?}"
                )),
                None => Err(format!("unrecognized descriptor: {sched}")),
            },
        };
    }
    let fields: Vec<&str> = sched.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {sched}",
            fields.len()
        ));
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let specs: [(u32, u32, &[&str], u32); 5] = [
        (0, 59, &[], 0),
        (0, 23, &[], 0),
        (1, 31, &[], 0),
        (1, 12, &MONTHS, 1),
        (0, 6, &DAYS, 0),
    ];
    for (field, (min, max, names, base)) in fields.iter().zip(specs) {
        for part in field.split(',') {
            range(part, min, max, names, base)?;
        }
    }
    Ok(())
}

fn range(expr: &str, min: u32, max: u32, names: &[&str], base: u32) -> Result<(), String> {
    let (rng, step) = match expr.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (expr, None),
    };
    let (start, end) = if rng == "*" || rng == "?" {
        (min, max)
    } else {
        let (a, b) = match rng.split_once('-') {
            Some((a, b)) => (value(a, names, base)?, Some(value(b, names, base)?)),
            None => (value(rng, names, base)?, None),
        };
        match (b, step) {
            (Some(b), _) => (a, b),
            (None, Some(_)) => (a, max),
            (None, None) => (a, a),
        }
    };
    if let Some(s) = step {
        let n: u32 = s.parse().map_err(|_| {
            format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
        })?;
        if n == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
    }
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    Ok(())
}

fn value(s: &str, names: &[&str], base: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + base);
    }
    s.parse::<u32>().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
    })
}

/// Go's time.ParseDuration grammar: one or more `NUMBER UNIT` with units ns us µs ms s m h.
fn go_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .find(|u| rest.starts_with(*u) && !(**u == "m" && rest.starts_with("ms")));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_what_kubernetes_accepts() {
        for ok in [
            "*/5 * * * *",
            "0 3 * * 1-5",
            "15,45 0-23/2 1 jan-DEC sun",
            "@hourly",
            "@every 1h30m",
            "0 0 ? * MON",
            "5/15 * * * *",
        ] {
            assert!(validate(ok).is_ok(), "{ok}: {:?}", validate(ok));
        }
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in [
            "* * * * * *",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "@fortnightly",
            "CRON_TZ=UTC 0 * * * *",
            "every day",
            "",
        ] {
            assert!(validate(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(
            validate("0 0 * * * *").unwrap_err(),
            "expected exactly 5 fields, found 6: 0 0 * * * *"
        );
    }
}
