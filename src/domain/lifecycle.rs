//! An order's life after its reservation, as a plain state machine. The shard that owns an order decides with it
//! before it journals a step, and recovery replays the journal's steps through it, so the live state and the
//! replayed one cannot disagree. Status only moves forward:
//!
//! ```text
//! reserved ─→ paid                                (the unit is sold)
//! reserved ─→ expired | cancelled ─→ released     (the unit is back on sale)
//! ```
//!
//! Money that arrives for an order that can no longer be filled is refunded (refund requested, then refunded),
//! beside the status and never changing it. Applying a step that cannot follow changes nothing, so a replay that
//! meets steps a snapshot already holds is harmless.

use serde::{Deserialize, Serialize, Serializer};
use smallvec::SmallVec;

use super::Timestamp;

/// Where an order stands, as buyers and admins read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Reserved,
    Paid,
    Expired,
    Cancelled,
    Released,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Reserved => "reserved",
            OrderStatus::Paid => "paid",
            OrderStatus::Expired => "expired",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Released => "released",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Reserved, Self::Paid, Self::Expired, Self::Cancelled, Self::Released]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// One journaled step of an order's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Paid,
    Expired,
    Cancelled,
    Released,
    RefundRequested,
    Refunded,
}

impl Step {
    pub const ALL: [Step; 6] =
        [Step::Paid, Step::Expired, Step::Cancelled, Step::Released, Step::RefundRequested, Step::Refunded];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Paid => "paid",
            Step::Expired => "expired",
            Step::Cancelled => "cancelled",
            Step::Released => "released",
            Step::RefundRequested => "refund_requested",
            Step::Refunded => "refunded",
        }
    }
}

/// How an order that was never paid ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Ending {
    Open,
    Paid,
    Expired,
    Cancelled,
}

/// Money for an order that could not be filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Refund {
    Requested,
    Refunded,
}

/// What a buyer's request comes to, given where the order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Journal this step.
    Take(Step),
    /// The order is already where the request would take it: nothing to do, and the answer is the order as it is.
    AlreadyDone,
    /// The request cannot apply to the order as it stands.
    Refused,
}

/// The state of one order after its reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLife {
    ending: Ending,
    released: bool,
    refund: Option<Refund>,
}

impl Default for OrderLife {
    fn default() -> Self {
        Self::reserved()
    }
}

impl OrderLife {
    /// A reservation with nothing after it.
    pub fn reserved() -> Self {
        Self { ending: Ending::Open, released: false, refund: None }
    }

    pub fn status(&self) -> OrderStatus {
        match (self.ending, self.released) {
            (_, true) => OrderStatus::Released,
            (Ending::Open, false) => OrderStatus::Reserved,
            (Ending::Paid, false) => OrderStatus::Paid,
            (Ending::Expired, false) => OrderStatus::Expired,
            (Ending::Cancelled, false) => OrderStatus::Cancelled,
        }
    }

    pub fn refund(&self) -> Option<Refund> {
        self.refund
    }

    /// Nothing has happened to the order since its reservation.
    pub fn is_open(&self) -> bool {
        *self == Self::reserved()
    }

    /// The order still holds its units (open, paid, or ended and not yet released).
    pub fn holds_units(&self) -> bool {
        !self.released
    }

    pub fn is_paid(&self) -> bool {
        self.ending == Ending::Paid
    }

    /// The order ended unpaid and its units must go back on sale.
    pub fn release_due(&self) -> bool {
        matches!(self.ending, Ending::Expired | Ending::Cancelled) && !self.released
    }

    /// Money was taken for this order and must be given back.
    pub fn refund_due(&self) -> bool {
        self.refund == Some(Refund::Requested)
    }

    /// Whether `step` may follow now.
    pub fn admits(&self, step: Step) -> bool {
        match step {
            Step::Paid | Step::Expired | Step::Cancelled => self.ending == Ending::Open,
            Step::Released => self.release_due(),
            Step::RefundRequested => {
                self.ending != Ending::Open && self.ending != Ending::Paid && self.refund.is_none()
            }
            Step::Refunded => self.refund_due(),
        }
    }

    /// Applies a journaled step. One that may not follow changes nothing: `false`.
    pub fn apply(&mut self, step: Step) -> bool {
        if !self.admits(step) {
            return false;
        }
        match step {
            Step::Paid => self.ending = Ending::Paid,
            Step::Expired => self.ending = Ending::Expired,
            Step::Cancelled => self.ending = Ending::Cancelled,
            Step::Released => self.released = true,
            Step::RefundRequested => self.refund = Some(Refund::Requested),
            Step::Refunded => self.refund = Some(Refund::Refunded),
        }
        true
    }

    /// Takes back `step`, whose append was reported failed though it may have landed: if it is where the order
    /// stands, the order goes back to where it was before it; otherwise nothing changes (`false`).
    pub fn revoke(&mut self, step: Step) -> bool {
        let latest = match step {
            Step::Paid => self.ending == Ending::Paid,
            Step::Expired => self.ending == Ending::Expired && !self.released && self.refund.is_none(),
            Step::Cancelled => self.ending == Ending::Cancelled && !self.released && self.refund.is_none(),
            Step::Released => self.released,
            Step::RefundRequested => self.refund == Some(Refund::Requested),
            Step::Refunded => self.refund == Some(Refund::Refunded),
        };
        if latest {
            match step {
                Step::Paid | Step::Expired | Step::Cancelled => self.ending = Ending::Open,
                Step::Released => self.released = false,
                Step::RefundRequested => self.refund = None,
                Step::Refunded => self.refund = Some(Refund::Requested),
            }
        }
        latest
    }

    /// The buyer asks to cancel.
    pub fn cancel(&self) -> Decision {
        match self.ending {
            Ending::Open => Decision::Take(Step::Cancelled),
            Ending::Cancelled => Decision::AlreadyDone,
            Ending::Paid | Ending::Expired => Decision::Refused,
        }
    }

    /// A payment succeeded: the order is paid if it is still open; money for an order that ended otherwise is
    /// refunded.
    pub fn payment_succeeded(&self) -> Decision {
        match (self.ending, self.refund) {
            (Ending::Open, _) => Decision::Take(Step::Paid),
            (Ending::Paid, _) | (_, Some(_)) => Decision::AlreadyDone,
            (Ending::Expired | Ending::Cancelled, None) => Decision::Take(Step::RefundRequested),
        }
    }

    /// The payment provider gave back the money of an order that could not be filled.
    pub fn refunded(&self) -> Decision {
        match self.refund {
            Some(Refund::Requested) => Decision::Take(Step::Refunded),
            Some(Refund::Refunded) => Decision::AlreadyDone,
            None => Decision::Refused,
        }
    }

    /// The payment window closed.
    pub fn expire(&self) -> Decision {
        match self.ending {
            Ending::Open => Decision::Take(Step::Expired),
            Ending::Expired => Decision::AlreadyDone,
            Ending::Paid | Ending::Cancelled => Decision::Refused,
        }
    }
}

/// A step and when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepAt {
    pub step: Step,
    pub at: Timestamp,
}

/// An order's steps after its reservation, in the order they were taken, and the state they lead to. Most orders
/// of a sale take one or two steps, kept inline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    life: OrderLife,
    steps: SmallVec<[StepAt; 2]>,
}

impl Timeline {
    /// The timeline of these steps, taken in this order (steps that could not follow are left out).
    pub fn of(steps: impl IntoIterator<Item = StepAt>) -> Self {
        let mut timeline = Self::default();
        for StepAt { step, at } in steps {
            timeline.apply(step, at);
        }
        timeline
    }

    pub fn life(&self) -> &OrderLife {
        &self.life
    }

    pub fn steps(&self) -> &[StepAt] {
        &self.steps
    }

    /// Takes `step` at `at` if it may follow; `false` changes nothing.
    pub fn apply(&mut self, step: Step, at: Timestamp) -> bool {
        let applied = self.life.apply(step);
        if applied {
            self.steps.push(StepAt { step, at });
        }
        applied
    }

    /// Takes `step` back if it is where the order stands (see `OrderLife::revoke`).
    pub fn revoke(&mut self, step: Step) -> bool {
        let revoked = self.life.revoke(step);
        if revoked {
            if let Some(index) = self.steps.iter().rposition(|taken| taken.step == step) {
                self.steps.remove(index);
            }
        }
        revoked
    }
}

/// A timeline as it is read: where the order stands, any refund, and every step with when it was taken.
#[derive(Serialize, utoipa::ToSchema)]
struct TimelineFields<'a> {
    status: OrderStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    refund: Option<Refund>,
    steps: &'a [StepAt],
}

impl Serialize for Timeline {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TimelineFields { status: self.life.status(), refund: self.life.refund(), steps: &self.steps }
            .serialize(serializer)
    }
}

impl utoipa::PartialSchema for Timeline {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        TimelineFields::schema()
    }
}

impl utoipa::ToSchema for Timeline {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>) {
        TimelineFields::schemas(schemas);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn step() -> impl Strategy<Value = Step> {
        proptest::sample::select(Step::ALL.to_vec())
    }

    /// What may be done to an order: the buyer's requests, the clock, the gateway's answer, the follow-up steps,
    /// and the undo of a step reported failed.
    #[derive(Debug, Clone, Copy)]
    enum Act {
        Cancel,
        Expire,
        PaymentSucceeded,
        Release,
        Refund,
        Revoke(Step),
    }

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            Just(Act::Cancel),
            Just(Act::Expire),
            Just(Act::PaymentSucceeded),
            Just(Act::Release),
            Just(Act::Refund),
            step().prop_map(Act::Revoke),
        ]
    }

    /// Carries out `act` the way the shard does: a decision becomes a step, applied; returns the step taken.
    fn perform(life: &mut OrderLife, act: Act) -> Option<Step> {
        let decision = match act {
            Act::Cancel => life.cancel(),
            Act::Expire => life.expire(),
            Act::PaymentSucceeded => life.payment_succeeded(),
            Act::Release => Decision::Take(Step::Released),
            Act::Refund => life.refunded(),
            Act::Revoke(step) => {
                life.revoke(step);
                return None;
            }
        };
        match decision {
            Decision::Take(step) if life.apply(step) => Some(step),
            _ => None,
        }
    }

    fn rank(status: OrderStatus) -> u8 {
        match status {
            OrderStatus::Reserved => 0,
            OrderStatus::Paid | OrderStatus::Expired | OrderStatus::Cancelled => 1,
            OrderStatus::Released => 2,
        }
    }

    proptest! {
        #[test]
        fn without_revokes_status_only_moves_forward_and_a_unit_is_released_at_most_once_never_when_paid(
            acts in proptest::collection::vec(act(), 0..24)
        ) {
            let mut life = OrderLife::reserved();
            let mut releases = 0;
            let mut was_paid = false;
            for act in acts.into_iter().filter(|act| !matches!(act, Act::Revoke(_))) {
                let before = life;
                let taken = perform(&mut life, act);
                prop_assert!(rank(life.status()) >= rank(before.status()), "{before:?} -> {life:?}");
                if before.status() != OrderStatus::Reserved && before.status() != life.status() {
                    prop_assert_eq!(life.status(), OrderStatus::Released);
                }
                releases += usize::from(taken == Some(Step::Released));
                was_paid |= life.is_paid();
                prop_assert!(!(was_paid && life.status() == OrderStatus::Released), "a paid unit was released");
                prop_assert!(life.refund().is_none() || !was_paid, "a paid order was refunded");
            }
            prop_assert!(releases <= 1);
        }

        #[test]
        fn every_order_can_end_in_exactly_one_terminal_state(acts in proptest::collection::vec(act(), 0..24)) {
            let mut life = OrderLife::reserved();
            for act in acts {
                perform(&mut life, act);
            }
            // Whatever happened, the clock and the follow-up steps finish it: paid, or released.
            for act in [Act::Expire, Act::Release, Act::Refund] {
                perform(&mut life, act);
            }
            let terminal = [life.status() == OrderStatus::Paid, life.status() == OrderStatus::Released];
            prop_assert_eq!(terminal.iter().filter(|t| **t).count(), 1, "{:?}", life);
            prop_assert!(!life.release_due() && !life.refund_due());
            prop_assert_eq!(life.holds_units(), life.is_paid());
        }

        #[test]
        fn a_revoked_step_leaves_the_order_as_if_it_had_never_been_taken(
            acts in proptest::collection::vec(act(), 0..16),
            last in act(),
        ) {
            let mut life = OrderLife::reserved();
            for act in acts {
                perform(&mut life, act);
            }
            let before = life;
            if let Some(step) = perform(&mut life, last) {
                prop_assert!(life.revoke(step));
                prop_assert_eq!(life, before);
            }
        }

        #[test]
        fn applying_a_step_twice_is_applying_it_once(acts in proptest::collection::vec(step(), 0..16)) {
            let mut once = OrderLife::reserved();
            let mut twice = OrderLife::reserved();
            for step in acts {
                once.apply(step);
                twice.apply(step);
                twice.apply(step);
            }
            prop_assert_eq!(once, twice);
        }
    }

    #[test]
    fn cancel_racing_payment_and_payment_racing_expiry_have_one_winner() {
        let mut cancelled_first = OrderLife::reserved();
        assert!(cancelled_first.apply(Step::Cancelled));
        assert_eq!(cancelled_first.payment_succeeded(), Decision::Take(Step::RefundRequested));
        let mut paid_first = OrderLife::reserved();
        assert!(paid_first.apply(Step::Paid));
        assert_eq!(paid_first.cancel(), Decision::Refused);
        assert_eq!(paid_first.expire(), Decision::Refused);
        assert!(!paid_first.apply(Step::Expired), "an expiry after the payment changes nothing");
        assert_eq!(paid_first.status(), OrderStatus::Paid);
    }

    #[test]
    fn a_timeline_rebuilt_from_its_steps_is_the_same_timeline() {
        let mut timeline = Timeline::default();
        assert!(timeline.apply(Step::Cancelled, Timestamp::from_millis(10)));
        assert!(!timeline.apply(Step::Paid, Timestamp::from_millis(11)), "a cancelled order is not paid");
        assert!(timeline.apply(Step::RefundRequested, Timestamp::from_millis(12)));
        assert!(timeline.apply(Step::Released, Timestamp::from_millis(13)));
        assert_eq!(timeline.life().status(), OrderStatus::Released);
        assert_eq!(Timeline::of(timeline.steps().iter().copied()), timeline);
        assert!(timeline.revoke(Step::Released));
        assert_eq!(timeline.steps().last().map(|taken| taken.step), Some(Step::RefundRequested));
        assert!(timeline.life().release_due());
    }

    #[test]
    fn statuses_read_back_from_their_names() {
        for status in [
            OrderStatus::Reserved,
            OrderStatus::Paid,
            OrderStatus::Expired,
            OrderStatus::Cancelled,
            OrderStatus::Released,
        ] {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("refunded"), None);
    }
}
