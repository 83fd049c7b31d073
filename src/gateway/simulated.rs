//! A payment provider inside the service, for development, tests and the bench: it answers each charge after a
//! configurable latency, fails a configurable share of them (or the next few, or all), and delivers the outcome the
//! way a real provider's webhook does: an HTTP POST, signed, to the service's callback URL, retried a few times if
//! the service does not take it. It remembers the orders it charged and refunded, so a charge or refund asked twice
//! happens once. Its knobs can be turned while it runs (`PUT /api/v1/admin/payments/simulator`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{GatewayError, PaymentGateway};
use crate::domain::{ChargeResult, OrderId, PaymentCallback, PaymentOrder, Timestamp, WebhookKey};

/// Deliveries of one callback the provider tries before it gives up on it.
const CALLBACK_DELIVERIES: u32 = 5;

/// The knobs, as an admin reads and sets them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatorKnobs {
    /// How long the provider takes to answer a call, and again to deliver a callback.
    pub latency_ms: u64,
    /// The share of charges and refunds it fails, from 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub failure_rate: f64,
    /// Fail this many calls first, whatever the rate.
    pub fail_next: u32,
    /// Accept charges but never call back (a provider that went quiet).
    pub silent: bool,
}

/// The knobs and what the provider has done. The knobs are fields of its own rather than `SimulatorKnobs` flattened:
/// the knobs refuse any other field (a request names only them), which the OpenAPI schema of a flattened view would
/// carry into it, refusing the counts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SimulatorView {
    pub latency_ms: u64,
    pub failure_rate: f64,
    pub fail_next: u32,
    pub silent: bool,
    pub charges: u64,
    pub refunds: u64,
    pub declined: u64,
    pub callbacks_delivered: u64,
}

pub struct SimulatedGateway {
    latency_ms: AtomicU64,
    /// `failure_rate` in millionths.
    failure_ppm: AtomicU32,
    fail_next: AtomicU32,
    silent: AtomicBool,
    declined: AtomicU64,
    delivered: Arc<AtomicU64>,
    charged: Mutex<HashSet<OrderId>>,
    refunded: Mutex<HashSet<OrderId>>,
    key: Arc<WebhookKey>,
    /// Where callbacks go: known once the service listens.
    callback_url: OnceLock<String>,
    client: reqwest::Client,
}

impl SimulatedGateway {
    pub fn new(knobs: SimulatorKnobs, key: Arc<WebhookKey>) -> Self {
        let gateway = Self {
            latency_ms: AtomicU64::new(0),
            failure_ppm: AtomicU32::new(0),
            fail_next: AtomicU32::new(0),
            silent: AtomicBool::new(false),
            declined: AtomicU64::new(0),
            delivered: Arc::new(AtomicU64::new(0)),
            charged: Mutex::new(HashSet::new()),
            refunded: Mutex::new(HashSet::new()),
            key,
            callback_url: OnceLock::new(),
            client: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default(),
        };
        gateway.set(knobs);
        gateway
    }

    /// A provider that answers at once, fails nothing and never calls back: for programs and tests that do not pay.
    pub fn silent(key: Arc<WebhookKey>) -> Self {
        Self::new(SimulatorKnobs { latency_ms: 0, failure_rate: 0.0, fail_next: 0, silent: true }, key)
    }

    /// Sends callbacks to `url` from now on (set once, when the service listens).
    pub fn call_back_to(&self, url: String) {
        let _ = self.callback_url.set(url);
    }

    pub fn set(&self, knobs: SimulatorKnobs) {
        self.latency_ms.store(knobs.latency_ms, Ordering::Relaxed);
        let ppm = (knobs.failure_rate.clamp(0.0, 1.0) * 1_000_000.0).round() as u32;
        self.failure_ppm.store(ppm, Ordering::Relaxed);
        self.fail_next.store(knobs.fail_next, Ordering::Relaxed);
        self.silent.store(knobs.silent, Ordering::Relaxed);
    }

    pub fn view(&self) -> SimulatorView {
        SimulatorView {
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
            failure_rate: f64::from(self.failure_ppm.load(Ordering::Relaxed)) / 1_000_000.0,
            fail_next: self.fail_next.load(Ordering::Relaxed),
            silent: self.silent.load(Ordering::Relaxed),
            charges: lock(&self.charged).len() as u64,
            refunds: lock(&self.refunded).len() as u64,
            declined: self.declined.load(Ordering::Relaxed),
            callbacks_delivered: self.delivered.load(Ordering::Relaxed),
        }
    }

    fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::Relaxed))
    }

    /// Waits the latency, then declines if the knobs say this call fails.
    async fn answer(&self, what: &str) -> Result<(), GatewayError> {
        tokio::time::sleep(self.latency()).await;
        let forced = self.fail_next.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok();
        let ppm = self.failure_ppm.load(Ordering::Relaxed);
        if forced || (ppm > 0 && rand::rng().random_range(0..1_000_000) < ppm) {
            self.declined.fetch_add(1, Ordering::Relaxed);
            return Err(GatewayError::Declined(format!("simulated {what} failure")));
        }
        Ok(())
    }

    /// Delivers the outcome of `payment`'s charge to the service, signed, after the latency.
    fn call_back(&self, payment: PaymentOrder) {
        let Some(url) = self.callback_url.get().cloned() else {
            tracing::warn!("the simulated provider has nowhere to call back yet");
            return;
        };
        let callback = PaymentCallback { payment, result: ChargeResult::Succeeded, reason: None };
        let Ok(body) = serde_json::to_vec(&callback) else { return };
        let (client, key, latency, delivered) =
            (self.client.clone(), Arc::clone(&self.key), self.latency(), Arc::clone(&self.delivered));
        tokio::spawn(async move {
            tokio::time::sleep(latency).await;
            for delivery in 1..=CALLBACK_DELIVERIES {
                let sent = Timestamp::now().millis() / 1000;
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("seckill-timestamp", sent.to_string())
                    .header("seckill-signature", key.sign(sent, &body))
                    .body(body.clone())
                    .send()
                    .await;
                match answer {
                    Ok(answer) if answer.status().is_success() || answer.status().is_client_error() => {
                        delivered.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200) * delivery).await,
                }
            }
            tracing::warn!(order = %payment.order_id, "the simulated provider gave up delivering a callback");
        });
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(&self, payment: &PaymentOrder) -> Result<(), GatewayError> {
        self.answer("charge").await?;
        lock(&self.charged).insert(payment.order_id);
        if !self.silent.load(Ordering::Relaxed) {
            self.call_back(*payment);
        }
        Ok(())
    }

    async fn refund(&self, payment: &PaymentOrder) -> Result<(), GatewayError> {
        self.answer("refund").await?;
        lock(&self.refunded).insert(payment.order_id);
        Ok(())
    }

    fn simulator(&self) -> Option<&SimulatedGateway> {
        Some(self)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
