//! A product on sale and the window in which it sells.

use serde::Serialize;

use super::{ParseError, PaymentWindow, PerUserLimit, ProductId, SaleState, ShardCount, StockLevel, Timestamp};

/// When a sale is open: `starts_at` inclusive, `ends_at` exclusive, and never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SaleWindow {
    starts_at: Timestamp,
    ends_at: Timestamp,
}

/// Where a sale stands at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SalePhase {
    Upcoming,
    Open,
    Ended,
}

impl SaleWindow {
    pub fn new(starts_at: Timestamp, ends_at: Timestamp) -> Result<Self, ParseError> {
        if starts_at < ends_at {
            Ok(Self { starts_at, ends_at })
        } else {
            Err(ParseError::new("ends_at", "must be after starts_at"))
        }
    }

    /// The window of a sale being created or moved: like `new`, and it must not have ended already at `now` (a sale
    /// in the past could never sell, and stopping one is what pausing it is for).
    pub fn reschedule(starts_at: Timestamp, ends_at: Timestamp, now: Timestamp) -> Result<Self, ParseError> {
        let window = Self::new(starts_at, ends_at)?;
        if ends_at <= now {
            return Err(ParseError::new("ends_at", "must be in the future"));
        }
        Ok(window)
    }

    pub fn starts_at(self) -> Timestamp {
        self.starts_at
    }

    pub fn ends_at(self) -> Timestamp {
        self.ends_at
    }

    pub fn phase(self, now: Timestamp) -> SalePhase {
        if now < self.starts_at {
            SalePhase::Upcoming
        } else if now < self.ends_at {
            SalePhase::Open
        } else {
            SalePhase::Ended
        }
    }
}

/// Everything an admin decides about a sale before it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductDraft {
    pub name: String,
    pub price_cents: i64,
    pub stock: StockLevel,
    pub per_user_limit: PerUserLimit,
    pub shards: ShardCount,
    pub window: SaleWindow,
    /// How long each buyer has to pay.
    pub payment_window: PaymentWindow,
    /// Whether a purchase needs a seckill token, fetched inside the window after every other check.
    pub requires_token: bool,
}

impl ProductDraft {
    pub const MAX_PRICE_CENTS: i64 = 100_000_000_000;

    pub fn parse_name(name: String) -> Result<String, ParseError> {
        let trimmed = name.trim();
        if trimmed.is_empty() || trimmed.chars().count() > 200 || trimmed.chars().any(char::is_control) {
            return Err(ParseError::new("name", "must be 1 to 200 characters, without control characters"));
        }
        Ok(trimmed.to_owned())
    }

    pub fn parse_price(cents: i64) -> Result<i64, ParseError> {
        if (0..=Self::MAX_PRICE_CENTS).contains(&cents) {
            Ok(cents)
        } else {
            Err(ParseError::new("price_cents", format!("must be from 0 to {}", Self::MAX_PRICE_CENTS)))
        }
    }
}

/// A stored sale, and the admin's switch on it as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub draft: ProductDraft,
    pub sale: SaleState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_must_not_be_empty() {
        let at = Timestamp::from_millis(1_000);
        assert!(SaleWindow::new(at, at).is_err());
        let window = SaleWindow::new(at, Timestamp::from_millis(2_000)).unwrap();
        assert_eq!(window.phase(Timestamp::from_millis(999)), SalePhase::Upcoming);
        assert_eq!(window.phase(at), SalePhase::Open);
        assert_eq!(window.phase(Timestamp::from_millis(2_000)), SalePhase::Ended);
    }

    #[test]
    fn a_new_window_must_still_be_open_somewhere_ahead() {
        let (start, end, now) =
            (Timestamp::from_millis(1_000), Timestamp::from_millis(2_000), Timestamp::from_millis(1_500));
        assert_eq!(SaleWindow::reschedule(start, end, now), SaleWindow::new(start, end), "already open is fine");
        assert_eq!(SaleWindow::reschedule(start, end, end).unwrap_err().field(), "ends_at");
        assert!(SaleWindow::reschedule(end, start, Timestamp::from_millis(0)).is_err(), "end before start");
    }

    #[test]
    fn names_and_prices_are_bounded() {
        assert!(ProductDraft::parse_name("   ".into()).is_err());
        assert_eq!(ProductDraft::parse_name(" Phone ".into()).unwrap(), "Phone");
        assert!(ProductDraft::parse_name("Phone\u{7}".into()).is_err(), "a bell");
        assert!(ProductDraft::parse_price(-1).is_err());
        assert!(ProductDraft::parse_price(ProductDraft::MAX_PRICE_CENTS + 1).is_err());
    }
}
