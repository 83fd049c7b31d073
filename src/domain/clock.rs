//! Wall-clock instants as Unix milliseconds: one integer that both SQL backends store natively and that
//! serialises as RFC 3339 for people. Every purchase writes three of them (two journaled, one in its answer), so
//! the common case, years 0000 to 9999, is formatted in place without a date library or an allocation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ParseError;

/// An instant, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, as JWT claims count time.
    pub fn unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn plus(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    pub fn to_rfc3339(self) -> String {
        self.with_rfc3339(str::to_owned)
    }

    /// Hands `use_text` the instant as `YYYY-MM-DDTHH:MM:SS.mmmZ`, as chrono writes it.
    fn with_rfc3339<T>(self, use_text: impl FnOnce(&str) -> T) -> T {
        let mut text = [0u8; RFC3339_LEN];
        if self.civil().write(&mut text) {
            use_text(std::str::from_utf8(&text).unwrap_or_default())
        } else {
            use_text(&self.to_rfc3339_by_chrono())
        }
    }

    fn to_rfc3339_by_chrono(self) -> String {
        DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// The calendar date and time of day (proleptic Gregorian, UTC), by Howard Hinnant's `civil_from_days`.
    fn civil(self) -> Civil {
        let days = self.0.div_euclid(MILLIS_PER_DAY);
        let of_day = self.0.rem_euclid(MILLIS_PER_DAY);
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted.rem_euclid(146_097);
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Civil { year, month, day, millis_of_day: of_day }
    }

    pub fn parse_rfc3339(field: &'static str, text: &str) -> Result<Self, ParseError> {
        DateTime::parse_from_rfc3339(text)
            .map(|at| Self(at.timestamp_millis()))
            .map_err(|_| ParseError::new(field, "must be an RFC 3339 date-time such as 2026-11-21T20:00:00Z"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_rfc3339(|text| serializer.serialize_str(text))
    }
}

const MILLIS_PER_DAY: i64 = 86_400_000;

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`
const RFC3339_LEN: usize = 24;

struct Civil {
    year: i64,
    month: i64,
    day: i64,
    millis_of_day: i64,
}

impl Civil {
    /// Writes the RFC 3339 form into `text`; false for a year that takes other than four digits.
    fn write(&self, text: &mut [u8; RFC3339_LEN]) -> bool {
        if !(0..=9999).contains(&self.year) {
            return false;
        }
        let seconds = self.millis_of_day / 1000;
        let fields = [
            (0, 4, self.year),
            (5, 2, self.month),
            (8, 2, self.day),
            (11, 2, seconds / 3600),
            (14, 2, seconds / 60 % 60),
            (17, 2, seconds % 60),
            (20, 3, self.millis_of_day % 1000),
        ];
        for (at, width, mut value) in fields {
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        for (at, separator) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')] {
            text[at] = separator;
        }
        true
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        super::schema::formatted(
            utoipa::openapi::KnownFormat::DateTime,
            "An RFC 3339 date-time; answers give it in UTC to the millisecond, such as 2026-11-21T20:00:00.000Z.",
        )
    }
}

impl utoipa::ToSchema for Timestamp {}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_rfc3339("timestamp", &text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let at = Timestamp::parse_rfc3339("at", "2026-11-21T20:00:00.250Z").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-21T20:00:00.250Z");
        assert_eq!(Timestamp::parse_rfc3339("at", &at.to_rfc3339()).unwrap(), at);
    }

    #[test]
    fn years_beyond_four_digits_are_written_as_chrono_writes_them() {
        for millis in [253_402_300_800_000, -62_167_219_200_001, i64::MAX, i64::MIN] {
            let at = Timestamp::from_millis(millis);
            assert_eq!(at.to_rfc3339(), at.to_rfc3339_by_chrono(), "{millis}");
        }
    }

    proptest! {
        #[test]
        fn formatting_agrees_with_chrono(millis in -62_167_219_200_000i64..253_402_300_800_000) {
            let at = Timestamp::from_millis(millis);
            prop_assert_eq!(at.to_rfc3339(), at.to_rfc3339_by_chrono());
            prop_assert_eq!(serde_json::to_string(&at).unwrap(), format!("\"{}\"", at.to_rfc3339_by_chrono()));
        }
    }

    #[test]
    fn garbage_is_refused_with_the_field_name() {
        let err = Timestamp::parse_rfc3339("starts_at", "tomorrow").unwrap_err();
        assert_eq!(err.field(), "starts_at");
    }
}
