//! The store's one time representation: whole milliseconds since the Unix
//! epoch, UTC.
//!
//! SQLite keeps it as an `INTEGER`, Postgres as a `timestamptz` written from
//! and read back to the same integer, so a value survives a round trip through
//! either engine unchanged. Milliseconds are what the `/api/auth` answers show
//! (`2024-01-15T10:00:00.000Z`, as in the seed services); finer precision would
//! only make equality across engines fragile.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A UTC instant with millisecond precision, between the Unix epoch and the
/// end of year 9999 (values outside are clamped, so arithmetic never fails and
/// every value fits both engines' column types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch, the earliest representable instant.
    pub const MIN: Timestamp = Timestamp(0);
    /// 9999-12-31T23:59:59.999Z, the latest representable instant.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);

    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// An instant given as milliseconds since the Unix epoch (clamped).
    pub const fn from_unix_millis(millis: i64) -> Timestamp {
        if millis < Self::MIN.0 {
            Self::MIN
        } else if millis > Self::MAX.0 {
            Self::MAX
        } else {
            Timestamp(millis)
        }
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (as in JWT `iat`/`exp`), rounded down.
    pub const fn unix_seconds(self) -> i64 {
        self.0 / 1000
    }

    /// Converts a `SystemTime`, dropping sub-millisecond precision (clamped).
    pub fn from_system_time(time: SystemTime) -> Timestamp {
        match time.duration_since(UNIX_EPOCH) {
            Ok(since) => {
                Timestamp::from_unix_millis(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
            }
            Err(_) => Timestamp::MIN,
        }
    }

    /// The same instant as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.unsigned_abs())
    }

    /// `self + duration`, clamped to [`Timestamp::MAX`].
    pub fn saturating_add(self, duration: Duration) -> Timestamp {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp::from_unix_millis(self.0.saturating_add(millis))
    }

    /// `self - duration`, clamped to [`Timestamp::MIN`].
    pub fn saturating_sub(self, duration: Duration) -> Timestamp {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp::from_unix_millis(self.0.saturating_sub(millis))
    }

    /// How long after `earlier` this instant is; zero when it is not after it
    /// (clocks of different nodes may disagree slightly).
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0).unsigned_abs())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Timestamp {
        Timestamp::from_system_time(time)
    }
}

impl From<Timestamp> for SystemTime {
    fn from(time: Timestamp) -> SystemTime {
        time.to_system_time()
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2024-01-15T10:00:00.000Z` (the
/// format the seed services' clients parse).
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let (days, secs_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            secs_of_day / 3600,
            secs_of_day / 60 % 60,
            secs_of_day % 60
        )
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), exact for every day this type can represent.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_rfc3339_with_milliseconds() {
        assert_eq!(Timestamp::MIN.to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp::from_unix_millis(1_705_312_800_000).to_string(),
            "2024-01-15T10:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_unix_millis(951_825_599_123).to_string(),
            "2000-02-29T11:59:59.123Z"
        );
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn arithmetic_clamps_instead_of_overflowing() {
        let t = Timestamp::from_unix_millis(1_000);
        assert_eq!(t.saturating_add(Duration::MAX), Timestamp::MAX);
        assert_eq!(t.saturating_sub(Duration::from_secs(5)), Timestamp::MIN);
        assert_eq!(Timestamp::from_unix_millis(-5), Timestamp::MIN);
        assert_eq!(
            t.saturating_duration_since(Timestamp::from_unix_millis(4_000)),
            Duration::ZERO
        );
        assert_eq!(
            Timestamp::from_unix_millis(4_500).saturating_duration_since(t),
            Duration::from_millis(3_500)
        );
    }

    #[test]
    fn round_trips_through_system_time() {
        let t = Timestamp::from_unix_millis(1_705_312_800_123);
        assert_eq!(Timestamp::from(t.to_system_time()), t);
        assert_eq!(t.unix_seconds(), 1_705_312_800);
    }
}
