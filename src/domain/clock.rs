//! Wall-clock instants as Unix milliseconds: one integer that both SQL backends store natively and that
//! serialises as RFC 3339 for people.

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

    pub fn from_millis(millis: i64) -> Self {
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
        DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn parse_rfc3339(field: &'static str, text: &str) -> Result<Self, ParseError> {
        DateTime::parse_from_rfc3339(text)
            .map(|at| Self(at.timestamp_millis()))
            .map_err(|_| ParseError::new(field, "must be an RFC 3339 date-time such as 2026-11-21T20:00:00Z"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_rfc3339("timestamp", &text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let at = Timestamp::parse_rfc3339("at", "2026-11-21T20:00:00.250Z").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-21T20:00:00.250Z");
        assert_eq!(Timestamp::parse_rfc3339("at", &at.to_rfc3339()).unwrap(), at);
    }

    #[test]
    fn garbage_is_refused_with_the_field_name() {
        let err = Timestamp::parse_rfc3339("starts_at", "tomorrow").unwrap_err();
        assert_eq!(err.field(), "starts_at");
    }
}
