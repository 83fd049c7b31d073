//! The correctness verdict: the product's order rows, read back once the projector has caught up, against every
//! order the service acknowledged with a 202.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// An order the service acknowledged, and the buyer it was acknowledged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Accepted {
    pub order_id: String,
    pub user_id: i64,
}

/// One row of `/admin/products/{id}/orders`, as far as the audit reads it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct OrderRow {
    pub order_id: String,
    pub user_id: i64,
    pub quantity: u64,
}

/// What a correct sale ends with.
pub(super) struct Expectation {
    pub stock: u64,
    /// Buyers that each sent one purchase.
    pub buyers: u64,
    /// Units each buyer could get: what it asked for, capped by the per-user limit.
    pub units_per_buyer: u64,
}

impl Expectation {
    /// Every unit, unless the crowd could not buy them all.
    fn sold(&self) -> u64 {
        self.stock.min(self.buyers.saturating_mul(self.units_per_buyer))
    }
}

/// The correctness counts of one run; all but `phantom` must be zero.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Correctness {
    /// Purchases answered 202.
    pub accepted: u64,
    /// Order rows of the product.
    pub orders: u64,
    pub units_ordered: u64,
    /// Units ordered beyond the stock.
    pub oversold: u64,
    /// Units the crowd should have bought but no order holds.
    pub unsold: u64,
    /// Acknowledged orders with no row for their buyer.
    pub lost: u64,
    /// Order ids with more than one row, plus buyers holding more units than they could get.
    pub duplicate: u64,
    /// Rows whose order was never acknowledged (possible only if a 202 was lost in transit).
    pub phantom: u64,
    pub invariant_holds: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Correctness {
    /// The non-zero counts that make the run fail, by name.
    pub fn failures(&self) -> Vec<(&'static str, u64)> {
        [("oversold", self.oversold), ("unsold", self.unsold), ("lost", self.lost), ("duplicate", self.duplicate)]
            .into_iter()
            .filter(|&(_, count)| count > 0)
            .collect()
    }
}

/// Compares the order rows with the acknowledged orders.
pub(super) fn audit(
    expect: &Expectation,
    accepted: &[Accepted],
    rows: &[OrderRow],
    invariant_holds: bool,
) -> Correctness {
    let mut owners: HashMap<&str, i64> = HashMap::with_capacity(rows.len());
    let mut units_by_buyer: HashMap<i64, u64> = HashMap::new();
    let mut repeated_ids = 0;
    for row in rows {
        match owners.entry(row.order_id.as_str()) {
            Entry::Occupied(_) => repeated_ids += 1,
            Entry::Vacant(slot) => {
                slot.insert(row.user_id);
            }
        }
        *units_by_buyer.entry(row.user_id).or_default() += row.quantity;
    }
    let greedy_buyers = units_by_buyer.values().filter(|&&units| units > expect.units_per_buyer).count() as u64;
    let acknowledged: HashMap<&str, i64> =
        accepted.iter().map(|order| (order.order_id.as_str(), order.user_id)).collect();
    let lost = accepted.iter().filter(|order| owners.get(order.order_id.as_str()) != Some(&order.user_id)).count();
    let phantom = owners.keys().filter(|id| !acknowledged.contains_key(*id)).count();
    let units_ordered: u64 = rows.iter().map(|row| row.quantity).sum();
    let expected_sold = expect.sold();
    Correctness {
        accepted: accepted.len() as u64,
        orders: rows.len() as u64,
        units_ordered,
        oversold: units_ordered.saturating_sub(expect.stock),
        unsold: expected_sold.saturating_sub(units_ordered),
        lost: lost as u64,
        duplicate: repeated_ids + greedy_buyers,
        phantom: phantom as u64,
        invariant_holds,
        note: (expected_sold < expect.stock)
            .then(|| format!("sale not exhausted by design: the crowd could buy only {expected_sold} units")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(order_id: &str, user_id: i64) -> Accepted {
        Accepted { order_id: order_id.to_owned(), user_id }
    }

    fn row(order_id: &str, user_id: i64) -> OrderRow {
        OrderRow { order_id: order_id.to_owned(), user_id, quantity: 1 }
    }

    fn expectation(stock: u64, buyers: u64) -> Expectation {
        Expectation { stock, buyers, units_per_buyer: 1 }
    }

    #[test]
    fn a_clean_sellout_has_nothing_to_report() {
        let acks = [accepted("a", 1), accepted("b", 2)];
        let rows = [row("a", 1), row("b", 2)];
        let verdict = audit(&expectation(2, 5), &acks, &rows, true);
        assert_eq!(verdict.units_ordered, 2);
        assert_eq!(
            (verdict.oversold, verdict.unsold, verdict.lost, verdict.duplicate, verdict.phantom),
            (0, 0, 0, 0, 0)
        );
        assert!(verdict.failures().is_empty());
        assert_eq!(verdict.note, None);
    }

    #[test]
    fn missing_extra_and_repeated_rows_are_counted() {
        let acks = [accepted("a", 1), accepted("b", 2), accepted("c", 3)];
        let rows = [row("a", 1), row("a", 1), row("b", 9), row("x", 4)];
        let verdict = audit(&expectation(3, 10), &acks, &rows, false);
        assert_eq!(verdict.orders, 4);
        assert_eq!(verdict.oversold, 1);
        // "b" belongs to another buyer and "c" has no row.
        assert_eq!(verdict.lost, 2);
        // "a" appears twice, and buyer 1 holds two units.
        assert_eq!(verdict.duplicate, 2);
        assert_eq!(verdict.phantom, 1);
        assert!(!verdict.invariant_holds);
        let failed: Vec<_> = verdict.failures().into_iter().map(|(name, _)| name).collect();
        assert_eq!(failed, ["oversold", "lost", "duplicate"]);
    }

    #[test]
    fn a_crowd_smaller_than_the_stock_leaves_units_by_design() {
        let acks = [accepted("a", 1)];
        let verdict = audit(&expectation(10, 1), &acks, &[row("a", 1)], true);
        assert_eq!(verdict.unsold, 0);
        assert!(verdict.note.is_some());
        let short = audit(&expectation(10, 2), &acks, &[row("a", 1)], true);
        assert_eq!(short.unsold, 1);
    }
}
