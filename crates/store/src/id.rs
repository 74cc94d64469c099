//! Snapshot ids: the UTC second a snapshot was taken, as `2026-11-25T02-00-00Z` (RFC 3339 with
//! `-` for `:`, so it is a valid file name everywhere and sorts by time).

use std::fmt;
use std::time::SystemTime;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;

const ID_FORMAT: &str = "%Y-%m-%dT%H-%M-%SZ";
const RFC3339_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// A snapshot's id: a UTC time to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId(Timestamp);

impl SnapshotId {
    /// The length of an id's name (`2026-11-25T02-00-00Z`).
    pub const LEN: usize = 20;

    /// The id for time `t` (to the second; times before 1970 count as 1970-01-01).
    pub fn at(t: SystemTime) -> SnapshotId {
        SnapshotId(whole_seconds(t))
    }

    /// The id for now.
    pub fn now() -> SnapshotId {
        SnapshotId::at(SystemTime::now())
    }

    /// The id a name stands for, if it is one (exactly as [`Display`](fmt::Display) writes it).
    pub fn parse(name: &str) -> Option<SnapshotId> {
        let civil = DateTime::strptime(ID_FORMAT, name).ok()?;
        let id = SnapshotId(Offset::UTC.to_timestamp(civil).ok()?);
        (id.to_string() == name).then_some(id)
    }

    /// The time, as RFC 3339 in UTC (`2026-11-25T02:00:00Z`).
    pub fn rfc3339(&self) -> String {
        self.0.strftime(RFC3339_FORMAT).to_string()
    }

    /// The UTC calendar date and time.
    pub fn civil(&self) -> DateTime {
        Offset::UTC.to_datetime(self.0)
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.strftime(ID_FORMAT))
    }
}

fn whole_seconds(t: SystemTime) -> Timestamp {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Formats a time as RFC 3339 in UTC with seconds (`2026-11-25T02:00:00Z`), as run records and
/// verification records write it.
pub fn rfc3339(t: SystemTime) -> String {
    SnapshotId::at(t).rfc3339()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(secs: u64) -> SnapshotId {
        SnapshotId::at(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn ids_name_known_instants() {
        // `date -u -d @1795572000 +%FT%H-%M-%SZ`.
        assert_eq!(at(0).to_string(), "1970-01-01T00-00-00Z");
        assert_eq!(at(1_795_572_000).to_string(), "2026-11-25T02-00-00Z");
        assert_eq!(at(951_782_400).to_string(), "2000-02-29T00-00-00Z");
        assert_eq!(at(1_795_572_000).rfc3339(), "2026-11-25T02:00:00Z");
        // `date -u -d @951782400 +%FT%TZ`.
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_572_000_999)),
            "2026-11-25T02:00:00Z"
        );
    }

    #[test]
    fn ids_round_trip() {
        for name in [
            "2026-11-25T02-00-00Z",
            "2020-12-31T23-59-59Z",
            "2000-02-29T12-30-01Z",
        ] {
            let id = SnapshotId::parse(name).unwrap();
            assert_eq!(id.to_string(), name);
        }
        let id = at(1_795_572_000);
        assert_eq!(SnapshotId::parse(&id.to_string()), Some(id));
    }

    #[test]
    fn other_names_are_not_ids() {
        for name in [
            "",
            "latest",
            ".partial-2026-11-25T02-00-00Z",
            "2026-11-25T02:00:00Z",
            "2026-11-25T02-00-00",
            "2026-11-25T02-00-00Z.json",
            "2026-13-25T02-00-00Z",
            "2026-02-29T02-00-00Z",
            "2026-1-25T02-00-00Z",
        ] {
            assert_eq!(SnapshotId::parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn ids_sort_as_their_names() {
        let a = SnapshotId::parse("2026-11-25T02-00-00Z").unwrap();
        let b = SnapshotId::parse("2026-11-26T01-00-00Z").unwrap();
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }
}
