//! Counts with bounds a flash sale needs: a purchase is 1..=100 units, a sale holds at most ten million, a product
//! splits into 1..=256 shards, a buyer has from a second to a day to pay. Anything outside is a client error, caught before it reaches an actor.

use serde::{Deserialize, Serialize};

use super::{schema, ParseError, UserId};

macro_rules! bounded {
    ($(#[doc = $doc:literal])* $name:ident, $int:ty, $field:literal, $min:expr, $max:expr) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "i64", into = "i64")]
        pub struct $name($int);

        impl $name {
            pub const MIN: $int = $min;
            pub const MAX: $int = $max;

            pub fn get(self) -> $int {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = ParseError;

            fn try_from(value: i64) -> Result<Self, ParseError> {
                match <$int>::try_from(value) {
                    Ok(v) if (Self::MIN..=Self::MAX).contains(&v) => Ok(Self(v)),
                    _ => Err(ParseError::new(
                        $field,
                        format!("must be an integer from {} to {}", Self::MIN, Self::MAX),
                    )),
                }
            }
        }

        impl From<$name> for i64 {
            fn from(value: $name) -> i64 {
                i64::from(value.0)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
                schema::integer(i64::from(Self::MIN), i64::from(Self::MAX), concat!($($doc),*).trim())
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

bounded!(
    /// Units asked for in one purchase.
    Quantity, u32, "quantity", 1, 100
);
bounded!(
    /// Units one user may hold of one product.
    PerUserLimit, u32, "per_user_limit", 1, 100
);
bounded!(
    /// Units a sale starts with.
    StockLevel, u32, "stock", 1, 10_000_000
);
bounded!(
    /// Units one restock adds to a sale: at most the largest stock a sale may start with, so that a product's stock
    /// stays far below what its counters hold however many restocks it gets.
    RestockUnits, u32, "units", 1, 10_000_000
);
bounded!(
    /// Shards a product's stock is split into.
    ShardCount, u32, "shards", 1, 256
);
bounded!(
    /// Seconds a buyer has to pay for a reservation before it expires.
    PaymentWindow, u32, "payment_window_secs", 1, 86_400
);

impl StockLevel {
    /// Most units a sale may hold with its restocks: far below what any counter of units holds.
    pub const MAX_WITH_RESTOCKS: u64 = 1_000_000_000;
}

impl PaymentWindow {
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.0))
    }
}

impl ShardCount {
    /// One shard per core: the shards of a product then never queue behind each other.
    pub fn per_core() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self(u32::try_from(cores).unwrap_or(Self::MAX).clamp(Self::MIN, Self::MAX))
    }

    /// The shard that owns `user`'s purchases of a product. Stable across restarts and releases (no per-process
    /// hash seed): the HTTP layer routes by it and recovery rebuilds shards by it.
    pub fn shard_of(self, user: UserId) -> usize {
        let mut x = user.get() as u64;
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        (x % u64::from(self.0)) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_bounds() {
        assert!(Quantity::try_from(0).is_err());
        assert!(Quantity::try_from(101).is_err());
        assert!(Quantity::try_from(i64::MAX).is_err());
        assert_eq!(Quantity::try_from(100).unwrap().get(), 100);
    }

    #[test]
    fn json_outside_the_bounds_does_not_deserialize() {
        assert!(serde_json::from_str::<Quantity>("-1").is_err());
        assert!(serde_json::from_str::<Quantity>("1.5").is_err());
        assert!(serde_json::from_str::<StockLevel>("10000001").is_err());
        assert_eq!(serde_json::from_str::<ShardCount>("4").unwrap().get(), 4);
    }

    #[test]
    fn users_spread_over_every_shard() {
        let shards = ShardCount::try_from(4).unwrap();
        let mut seen = [0usize; 4];
        for id in 1..=4_000 {
            seen[shards.shard_of(UserId::try_from(id).unwrap())] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "uneven spread: {seen:?}");
    }
}
