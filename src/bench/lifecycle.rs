//! `--pay FRACTION`: the rest of the sale, after the crowd. Buyers pay that fraction of their orders (through the
//! service's payment provider, which calls back) and leave the rest to expire at the end of the sale's short payment
//! window; the units of the expired orders go back on sale, and fresh buyers buy and pay for them. The run passes
//! only if every unit ended paid — by its first buyer, or resold after an expiry — each unit once, and the ledger
//! held. None of this is timed: it runs after the measured purchase phase.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::api::{Api, Buyer, ProductView};
use super::audit::Accepted;
use super::SETTLE_POLL;

/// Buyer requests of this phase in flight at once.
const PARALLEL: usize = 64;

/// What the order lifecycle came to.
#[derive(Debug, Clone, Serialize)]
pub(super) struct LifecycleReport {
    pub pay_fraction: f64,
    pub payment_window_secs: u64,
    /// Orders of the crowd whose buyers paid, and the provider's answer arrived in time.
    pub paid: u64,
    /// Orders of the crowd left unpaid, expired at the end of their window.
    pub expired: u64,
    /// Units that went back on sale.
    pub released: u64,
    /// Of those, units bought again (and paid) by fresh buyers.
    pub resold: u64,
    /// Pay requests the service refused (should be 0).
    pub pay_refused: u64,
    /// Units paid in the end; every unit of the stock must be.
    pub paid_in_the_end: u64,
    pub invariant_holds: bool,
    pub every_unit_accounted: bool,
    pub seconds: f64,
}

#[derive(Deserialize)]
struct Receipt {
    order_id: String,
}

/// Pays `fraction` of `accepted`, waits until every order ended, resells what came back, and checks the ledger.
pub(super) async fn run(
    api: &Api,
    product: i64,
    stock: u64,
    accepted: &[Accepted],
    tokens: &HashMap<i64, String>,
    fraction: f64,
    window: Duration,
) -> Result<LifecycleReport> {
    let started = Instant::now();
    let payers: Vec<&Accepted> = accepted.iter().filter(|_| rand::rng().random_bool(fraction)).collect();
    let mut pay_refused = pay(api, &payers, tokens).await?;
    let settled = ended(api, product, window).await?;
    let (paid, released) = (settled.paid, settled.released);

    // Fresh buyers for what came back, and one more, who must be told it is sold out.
    let fresh = api.create_buyers(&format!("bench-resale-{}", super::random_tag()), released as usize + 1).await?;
    let bought = buy(api, product, &fresh).await?;
    let resold = bought.len() as u64;
    let fresh_tokens: HashMap<i64, String> =
        fresh.iter().map(|buyer| (buyer.user_id, buyer.access_token.clone())).collect();
    let resold_orders: Vec<Accepted> = bought;
    pay_refused += pay(api, &resold_orders.iter().collect::<Vec<_>>(), &fresh_tokens).await?;
    let last = ended(api, product, window).await?;

    // Every unit is paid, or (if the crowd was smaller than the stock) still on sale; nothing that came back was
    // left unsold or sold twice.
    let every_unit_accounted =
        last.paid + last.available == stock && resold == released && last.paid == paid + resold && last.invariant_holds;
    Ok(LifecycleReport {
        pay_fraction: fraction,
        payment_window_secs: window.as_secs(),
        paid,
        expired: accepted.len() as u64 - paid,
        released,
        resold,
        pay_refused,
        paid_in_the_end: last.paid,
        invariant_holds: last.invariant_holds,
        every_unit_accounted,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Starts paying each order as its buyer; returns how many the service refused.
async fn pay(api: &Api, orders: &[&Accepted], tokens: &HashMap<i64, String>) -> Result<u64> {
    let refused: Vec<bool> = futures::stream::iter(orders.iter())
        .map(|order| async move {
            let token = tokens.get(&order.user_id).context("a buyer without a token")?;
            let url = api.endpoint(&format!("/api/v1/orders/{}/pay", order.order_id))?;
            let (status, _) = api.as_buyer(api.http().post(url), token).await?;
            Ok::<_, anyhow::Error>(!status.is_success())
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    Ok(refused.into_iter().filter(|refused| *refused).count() as u64)
}

/// Each fresh buyer buys one unit; returns the orders they were given.
async fn buy(api: &Api, product: i64, buyers: &[Buyer]) -> Result<Vec<Accepted>> {
    let bought: Vec<Option<Accepted>> = futures::stream::iter(buyers.iter())
        .map(|buyer| async move {
            let url = api.endpoint(&format!("/api/v1/products/{product}/purchase"))?;
            let request = api.http().post(url).json(&serde_json::json!({ "quantity": 1 }));
            let (status, body) = api.as_buyer(request, &buyer.access_token).await?;
            if status != StatusCode::ACCEPTED {
                return Ok(None);
            }
            let receipt: Receipt = serde_json::from_slice(&body).context("a purchase's receipt")?;
            Ok::<_, anyhow::Error>(Some(Accepted { order_id: receipt.order_id, user_id: buyer.user_id }))
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    Ok(bought.into_iter().flatten().collect())
}

/// Waits until no order of the product awaits payment or the journal: every one paid, or expired and released.
async fn ended(api: &Api, product: i64, window: Duration) -> Result<ProductView> {
    let deadline = Instant::now() + window + Duration::from_secs(120);
    loop {
        let view = api.product(product).await?;
        if view.reserved == 0 && view.in_flight == 0 {
            return Ok(view);
        }
        if Instant::now() > deadline {
            bail!(
                "orders still unsettled {} s after their window: {} reserved",
                (window + Duration::from_secs(120)).as_secs(),
                view.reserved
            );
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}
