//! Identifiers. Each is its own type so a user id can never be passed where a product id is expected.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use super::{schema, ParseError};

macro_rules! positive_id {
    ($name:ident, $field:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "i64", into = "i64")]
        pub struct $name(i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = ParseError;

            fn try_from(value: i64) -> Result<Self, ParseError> {
                if value > 0 {
                    Ok(Self(value))
                } else {
                    Err(ParseError::new($field, "must be a positive integer"))
                }
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        /// Only the canonical decimal form: `+1` and `01` are not another way to write 1.
        impl FromStr for $name {
            type Err = ParseError;

            fn from_str(text: &str) -> Result<Self, ParseError> {
                let refused =
                    || ParseError::new($field, "must be a positive integer in decimal, without sign or leading zeros");
                if !text.starts_with(|c: char| ('1'..='9').contains(&c)) {
                    return Err(refused());
                }
                let value: i64 = text.parse().map_err(|_| refused())?;
                Self::try_from(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
                schema::integer(
                    1,
                    i64::MAX,
                    "A positive integer; in a path, in canonical decimal (no sign, no leading zeros).",
                )
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

positive_id!(ProductId, "product_id");
positive_id!(UserId, "user_id");
positive_id!(DeadLetterId, "dead_letter_id");

/// An order's id: a UUIDv7, so ids sort by creation time and never collide across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderId(Uuid);

impl OrderId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl FromStr for OrderId {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        Uuid::parse_str(text).map(Self).map_err(|_| ParseError::new("order_id", "must be a UUID"))
    }
}

impl TryFrom<String> for OrderId {
    type Error = ParseError;

    fn try_from(text: String) -> Result<Self, ParseError> {
        text.parse()
    }
}

impl From<OrderId> for String {
    fn from(id: OrderId) -> String {
        id.to_string()
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

impl utoipa::PartialSchema for OrderId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        schema::formatted(utoipa::openapi::KnownFormat::Uuid, "An order's id: a UUIDv7, hyphenated.")
    }
}

impl utoipa::ToSchema for OrderId {}

/// A client's `Idempotency-Key`: 1 to 128 visible ASCII characters, scoped to the user who sent it. A shard keeps
/// it in its key index and in the reservation it journals, so it is shared rather than copied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct IdempotencyKey(Arc<str>);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 128;
}

impl TryFrom<String> for IdempotencyKey {
    type Error = ParseError;

    fn try_from(text: String) -> Result<Self, ParseError> {
        let visible = text.bytes().all(|b| b.is_ascii_graphic());
        if text.is_empty() || text.len() > Self::MAX_LEN || !visible {
            return Err(ParseError::new(
                "Idempotency-Key",
                format!("must be 1 to {} visible ASCII characters", Self::MAX_LEN),
            ));
        }
        Ok(Self(text.into()))
    }
}

impl utoipa::PartialSchema for IdempotencyKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        schema::text(
            Some("^[!-~]+$"),
            1,
            Self::MAX_LEN,
            "1 to 128 visible ASCII characters, scoped to the caller: a repeat answers the first request's order.",
        )
    }
}

impl utoipa::ToSchema for IdempotencyKey {}

impl Serialize for IdempotencyKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A place in the journal. Everything at or before it is reflected in whatever carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position(i64);

impl Position {
    pub const START: Position = Position(0);

    pub fn new(value: i64) -> Self {
        Self(value)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_positive() {
        assert!(ProductId::try_from(0).is_err());
        assert!(ProductId::try_from(-3).is_err());
        assert_eq!(ProductId::try_from(7).unwrap().get(), 7);
        assert!("abc".parse::<UserId>().is_err());
    }

    #[test]
    fn ids_in_text_are_canonical_decimal_only() {
        assert_eq!("1".parse::<ProductId>().unwrap().get(), 1);
        assert_eq!("9223372036854775807".parse::<UserId>().unwrap().get(), i64::MAX);
        for text in ["+1", "01", "0", "-1", " 1", "1 ", "", "1e3", "9223372036854775808", "١"] {
            assert!(text.parse::<ProductId>().is_err(), "{text:?}");
        }
    }

    #[test]
    fn idempotency_keys_are_bounded_visible_ascii() {
        assert!(IdempotencyKey::try_from(String::new()).is_err());
        assert!(IdempotencyKey::try_from("a b".to_owned()).is_err());
        assert!(IdempotencyKey::try_from("x".repeat(129)).is_err());
        assert!(IdempotencyKey::try_from("order-42:retry".to_owned()).is_ok());
    }

    #[test]
    fn order_ids_round_trip_through_text() {
        let id = OrderId::generate();
        assert_eq!(id.to_string().parse::<OrderId>().unwrap(), id);
        assert!("not-a-uuid".parse::<OrderId>().is_err());
    }
}
