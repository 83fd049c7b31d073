//! The payment provider, seen through one trait so the actors that pay and refund do not care which provider it is.
//! A provider takes a charge and answers later, at the service's callback URL (see `domain::payment`); a refund is
//! answered at once. Both are idempotent per order, as real providers' are under an idempotency key, so that an
//! attempt retried after a lost answer never takes or gives money twice.
//!
//! This sits beside `persistence`: an adapter to something outside the process, used by the actors, depending only
//! on the domain.

mod simulated;

use async_trait::async_trait;

pub use simulated::{SimulatedGateway, SimulatorKnobs, SimulatorView};

use crate::domain::PaymentOrder;

/// Why the provider did not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("the provider declined: {0}")]
    Declined(String),
    #[error("the provider did not answer: {0}")]
    Unreachable(String),
}

#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Asks for `payment`. `Ok` means the provider accepted it; whether the money moved comes to the callback.
    async fn charge(&self, payment: &PaymentOrder) -> Result<(), GatewayError>;

    /// Gives back the money taken for `payment`'s order. `Ok` means it is given back.
    async fn refund(&self, payment: &PaymentOrder) -> Result<(), GatewayError>;

    /// The simulated provider's knobs, if this is it.
    fn simulator(&self) -> Option<&SimulatedGateway> {
        None
    }
}
