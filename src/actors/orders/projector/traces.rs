//! How a purchase's trace reaches its order's projection. The journal writer hands over the span of each traced
//! reservation it committed; what is kept is where that trace goes on (its span context: the span itself has ended
//! by then) until the projector writes the order, whose `projector.apply` span then continues the purchase's trace.
//! A run that writes orders has a `projector.run` span of its own, linked both ways with theirs, as a journal batch
//! is with its appends. An order whose purchase this process did not trace — committed before a restart, or on
//! another node sharing the Kafka journal — is applied under its run alone. None of this happens while traces are
//! off: no span is handed over, and a run asks for no spans.

use std::sync::{Mutex, OnceLock, PoisonError};

use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use rustc_hash::FxHashMap;
use tracing::field::Empty;
use tracing::{Level, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::domain::{OrderId, Position, Reservation};
use crate::persistence::{OrderSpans, Projected};

/// Most reservations kept waiting for their projection; past it, further ones are applied without their purchase's
/// trace. It bounds what is left behind by orders that another node projects.
const MAX_WAITING: usize = 100_000;

/// Committed reservations not yet projected whose traces go on, by order.
#[derive(Default)]
pub struct Traces {
    waiting: Mutex<FxHashMap<OrderId, SpanContext>>,
}

impl Traces {
    /// Remembers where the traces of committed reservations go on.
    pub fn committed(&self, events: Vec<(OrderId, Span)>) {
        let contexts: Vec<(OrderId, SpanContext)> = events
            .into_iter()
            .map(|(order, span)| (order, span.context().span().span_context().clone()))
            .filter(|(_, context)| context.is_valid())
            .collect();
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let room = MAX_WAITING.saturating_sub(waiting.len());
        waiting.extend(contexts.into_iter().take(room));
    }

    fn take(&self, order: OrderId) -> Option<SpanContext> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&order)
    }
}

/// The spans of one projection run.
pub struct RunSpans<'a> {
    traces: &'a Traces,
    /// Made with the run's first order: a run that finds nothing to write leaves no trace.
    run: OnceLock<Span>,
}

impl<'a> RunSpans<'a> {
    /// The spans of a run, while DEBUG spans can be on at all.
    pub fn start(traces: &'a Traces) -> Option<Self> {
        tracing::level_enabled!(Level::DEBUG).then(|| Self { traces, run: OnceLock::new() })
    }

    /// Records what the run did on its span, if it has one.
    pub fn finish(self, projected: &Projected) {
        if let Some(run) = self.run.get() {
            run.record("journal.events", projected.events as i64);
            run.record("orders", projected.orders as i64);
        }
    }
}

impl OrderSpans for RunSpans<'_> {
    fn applying(&self, reservation: &Reservation, position: Position) -> Span {
        let run = self.run.get_or_init(
            || tracing::debug_span!(parent: None, "projector.run", journal.events = Empty, orders = Empty),
        );
        let span = tracing::debug_span!(
            parent: run,
            "projector.apply",
            order_id = %reservation.order_id,
            product_id = reservation.product_id.get(),
            journal.position = position.get(),
        );
        if let Some(purchase) = self.traces.take(reservation.order_id) {
            // Before anything starts the span: its parent is fixed once it has started.
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(purchase));
        }
        run.follows_from(&span);
        span.follows_from(run);
        span
    }
}
