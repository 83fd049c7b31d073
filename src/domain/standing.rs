//! Whether an account or an address may be served: the version its tokens must carry, and bans. They are values of
//! their own because the purchase path checks them on every request against an in-memory copy, and the admin sets
//! them through the database; both sides must agree on what a ban on "until t" means at any instant.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{schema, ParseError, Timestamp, UserId};

/// Which generation of an account's tokens is valid. Raising it (a password change, a revocation) turns every
/// earlier token of the account away on its next request.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct TokenVersion(u32);

impl TokenVersion {
    pub fn get(self) -> u32 {
        self.0
    }

    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl TryFrom<i64> for TokenVersion {
    type Error = ParseError;

    fn try_from(stored: i64) -> Result<Self, ParseError> {
        u32::try_from(stored).map(Self).map_err(|_| ParseError::new("token_version", "must be 0 to 4294967295"))
    }
}

/// Who a ban is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BanSubject {
    User(UserId),
    Ip(IpAddr),
}

impl BanSubject {
    /// The kind as stored and as the API names it.
    pub fn kind(self) -> &'static str {
        match self {
            BanSubject::User(_) => "user",
            BanSubject::Ip(_) => "ip",
        }
    }

    /// The subject as stored: a user id in decimal, or an address in its canonical text.
    pub fn subject(self) -> String {
        match self {
            BanSubject::User(user) => user.to_string(),
            BanSubject::Ip(ip) => ip.to_canonical().to_string(),
        }
    }

    /// The subject stored as `kind` and `subject`.
    pub fn parse(kind: &str, subject: &str) -> Result<Self, ParseError> {
        match kind {
            "user" => subject.parse().map(BanSubject::User),
            "ip" => Self::ip(subject),
            _ => Err(ParseError::new("kind", "must be \"user\" or \"ip\"")),
        }
    }

    /// An address ban; an IPv4 address mapped into IPv6 is the IPv4 address.
    pub fn ip(text: &str) -> Result<Self, ParseError> {
        text.parse::<IpAddr>()
            .map(|ip| BanSubject::Ip(ip.to_canonical()))
            .map_err(|_| ParseError::new("ip", "must be an IPv4 or IPv6 address"))
    }
}

/// Why an admin banned someone, for the next admin to read: at most 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BanReason(String);

impl TryFrom<String> for BanReason {
    type Error = ParseError;

    fn try_from(text: String) -> Result<Self, ParseError> {
        if text.chars().count() <= 200 && !text.chars().any(char::is_control) {
            Ok(Self(text))
        } else {
            Err(ParseError::new("reason", "must be at most 200 characters, without control characters"))
        }
    }
}

impl utoipa::PartialSchema for BanReason {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        schema::text(
            Some(schema::NO_CONTROL),
            0,
            200,
            "Why, for the next admin: at most 200 characters, no control characters.",
        )
    }
}

impl utoipa::ToSchema for BanReason {}

impl From<BanReason> for String {
    fn from(reason: BanReason) -> String {
        reason.0
    }
}

impl fmt::Display for BanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When a ban ends by itself, if ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanEnd {
    Never,
    At(Timestamp),
}

impl BanEnd {
    /// Whether the ban still holds at `now` (it ends at its instant, not a millisecond later).
    pub fn holds_at(self, now: Timestamp) -> bool {
        match self {
            BanEnd::Never => true,
            BanEnd::At(end) => now < end,
        }
    }

    pub fn until(self) -> Option<Timestamp> {
        match self {
            BanEnd::Never => None,
            BanEnd::At(end) => Some(end),
        }
    }
}

/// One entry of the blacklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub subject: BanSubject,
    pub end: BanEnd,
    pub reason: Option<BanReason>,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_ends_at_its_instant() {
        let end = Timestamp::from_millis(1_000);
        assert!(BanEnd::At(end).holds_at(Timestamp::from_millis(999)));
        assert!(!BanEnd::At(end).holds_at(end));
        assert!(BanEnd::Never.holds_at(Timestamp::from_millis(i64::MAX)));
    }

    #[test]
    fn subjects_round_trip_through_their_stored_form() {
        let user = BanSubject::User(UserId::try_from(42).unwrap());
        let v4 = BanSubject::ip("203.0.113.9").unwrap();
        let v6 = BanSubject::ip("2001:db8::1").unwrap();
        for subject in [user, v4, v6] {
            assert_eq!(BanSubject::parse(subject.kind(), &subject.subject()).unwrap(), subject);
        }
        assert_eq!(BanSubject::ip("::ffff:203.0.113.9").unwrap(), v4, "a mapped address is its IPv4 address");
        for (kind, subject) in [("user", "0"), ("user", "x"), ("ip", "300.1.1.1"), ("host", "a")] {
            assert!(BanSubject::parse(kind, subject).is_err(), "{kind} {subject}");
        }
    }

    #[test]
    fn reasons_are_short_and_printable() {
        assert!(BanReason::try_from("card testing".to_owned()).is_ok());
        assert!(BanReason::try_from("a\nb".to_owned()).is_err());
        assert!(BanReason::try_from("x".repeat(201)).is_err());
    }

    #[test]
    fn token_versions_only_go_up() {
        let first = TokenVersion::default();
        assert!(first.next() > first);
        assert!(TokenVersion::try_from(-1).is_err());
        assert_eq!(TokenVersion::try_from(3).unwrap().get(), 3);
    }
}
