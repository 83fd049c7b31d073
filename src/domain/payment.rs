//! Money for an order, as the service and its payment provider exchange it. A provider answers a charge later, at
//! the service's callback URL, the way WeChat Pay v3 and Stripe webhooks do; anyone can reach that URL, so a
//! callback is believed only when it carries an HMAC-SHA256 signature, under the secret the two share, over its
//! timestamp and its body, and only within a tolerance of the service's clock (an old callback replayed by someone
//! who captured it is refused). The signature is checked in constant time (`ring::hmac::verify`).

use std::time::Duration;

use ring::hmac;
use serde::{Deserialize, Serialize};

use super::{Order, OrderId, ProductId, Reservation, Timestamp, UserId};

/// What a charge or a refund is for: one order, and its price. The provider echoes the ids back in its callback, as
/// a real provider returns the merchant's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentOrder {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub user_id: UserId,
    pub amount_cents: i64,
}

impl PaymentOrder {
    /// The payment of `reservation` at `unit_price_cents` a unit.
    pub fn of(reservation: &Reservation, unit_price_cents: i64) -> Self {
        Self::of_order(&Order::new(reservation, Default::default()), unit_price_cents)
    }

    /// The payment of `order` at `unit_price_cents` a unit.
    pub fn of_order(order: &Order, unit_price_cents: i64) -> Self {
        Self {
            order_id: order.order_id,
            product_id: order.product_id,
            user_id: order.user_id,
            amount_cents: unit_price_cents.saturating_mul(i64::from(order.quantity.get())),
        }
    }
}

/// How a charge ended, as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChargeResult {
    Succeeded,
    Failed,
}

/// The body of a provider's callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentCallback {
    #[serde(flatten)]
    pub payment: PaymentOrder,
    pub result: ChargeResult,
    /// Why a charge failed, in the provider's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why a callback was not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallbackRefusal {
    #[error("the callback carries no timestamp or no signature")]
    Unsigned,
    #[error("the callback's signature does not match its timestamp and body")]
    BadSignature,
    #[error("the callback's timestamp is outside the tolerance of the service's clock")]
    Stale,
}

/// The secret the service shares with its payment provider, ready to sign and verify.
pub struct WebhookKey {
    key: hmac::Key,
    tolerance: Duration,
}

impl WebhookKey {
    /// Callbacks are believed within `tolerance` of the service's clock, either way.
    pub fn new(secret: &str, tolerance: Duration) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), tolerance }
    }

    /// The signature header's value for `body` sent at `timestamp_secs`: `v1=` and the hex of the HMAC of
    /// `"{timestamp}.{body}"`.
    pub fn sign(&self, timestamp_secs: i64, body: &[u8]) -> String {
        let tag = hmac::sign(&self.key, &signed_bytes(timestamp_secs, body));
        let mut signature = String::with_capacity(3 + 64);
        signature.push_str("v1=");
        for byte in tag.as_ref() {
            signature.push_str(&format!("{byte:02x}"));
        }
        signature
    }

    /// Believes `body` if `signature` signs it with `timestamp` and the timestamp is within the tolerance of `now`.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<(), CallbackRefusal> {
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else { return Err(CallbackRefusal::Unsigned) };
        let timestamp_secs: i64 = timestamp.trim().parse().map_err(|_| CallbackRefusal::BadSignature)?;
        let tag = signature.trim().strip_prefix("v1=").and_then(unhex).ok_or(CallbackRefusal::BadSignature)?;
        hmac::verify(&self.key, &signed_bytes(timestamp_secs, body), &tag)
            .map_err(|_| CallbackRefusal::BadSignature)?;
        let skew = now.millis().abs_diff(timestamp_secs.saturating_mul(1000));
        if Duration::from_millis(skew) > self.tolerance {
            return Err(CallbackRefusal::Stale);
        }
        Ok(())
    }
}

fn signed_bytes(timestamp_secs: i64, body: &[u8]) -> Vec<u8> {
    let mut signed = timestamp_secs.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    signed
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
    const BODY: &[u8] = br#"{"result":"succeeded"}"#;

    fn key() -> WebhookKey {
        WebhookKey::new("a shared secret of the service and its provider", Duration::from_secs(300))
    }

    #[test]
    fn a_signed_callback_is_believed_within_the_tolerance_and_only_then() {
        let (key, now, sent, body) = (key(), NOW, NOW.millis() / 1000, BODY);
        let (signature, stamp) = (key.sign(sent, body), sent.to_string());
        assert_eq!(key.verify(Some(&stamp), Some(&signature), body, now), Ok(()));
        let late = Timestamp::from_millis(now.millis() + 301_000);
        assert_eq!(key.verify(Some(&stamp), Some(&signature), body, late), Err(CallbackRefusal::Stale));
        let early = Timestamp::from_millis(now.millis() - 301_000);
        assert_eq!(key.verify(Some(&stamp), Some(&signature), body, early), Err(CallbackRefusal::Stale));
    }

    #[test]
    fn a_changed_body_timestamp_or_secret_breaks_the_signature() {
        let (key, now, sent, body) = (key(), NOW, NOW.millis() / 1000, BODY);
        let (signature, stamp) = (key.sign(sent, body), sent.to_string());
        let refused =
            |timestamp: &str, signature: &str, body: &[u8]| key.verify(Some(timestamp), Some(signature), body, now);
        assert_eq!(refused(&stamp, &signature, br#"{"result":"failed"}"#), Err(CallbackRefusal::BadSignature));
        assert_eq!(refused(&(sent - 1).to_string(), &signature, body), Err(CallbackRefusal::BadSignature));
        let forged = WebhookKey::new("somebody else's secret", Duration::from_secs(300)).sign(sent, body);
        assert_eq!(refused(&stamp, &forged, body), Err(CallbackRefusal::BadSignature));
        for garbage in ["", "v1=", "v1=zz", "v2=00", &signature[3..]] {
            assert_eq!(refused(&stamp, garbage, body), Err(CallbackRefusal::BadSignature), "{garbage:?}");
        }
        assert_eq!(refused("soon", &signature, body), Err(CallbackRefusal::BadSignature));
        assert_eq!(key.verify(None, Some(&signature), body, now), Err(CallbackRefusal::Unsigned));
        assert_eq!(key.verify(Some(&stamp), None, body, now), Err(CallbackRefusal::Unsigned));
    }

    #[test]
    fn a_callback_round_trips_with_the_order_flattened_into_it() {
        let callback = PaymentCallback {
            payment: PaymentOrder {
                order_id: OrderId::generate(),
                product_id: ProductId::try_from(2).unwrap(),
                user_id: UserId::try_from(5).unwrap(),
                amount_cents: 1999,
            },
            result: ChargeResult::Succeeded,
            reason: None,
        };
        let json = serde_json::to_string(&callback).unwrap();
        assert!(json.contains("\"order_id\"") && json.contains("\"result\":\"succeeded\""), "{json}");
        assert_eq!(serde_json::from_str::<PaymentCallback>(&json).unwrap(), callback);
    }
}
