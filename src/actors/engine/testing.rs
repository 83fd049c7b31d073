//! What the engine's tests share: an engine on a fresh SQLite file, a journal whose appends fail on cue, an open
//! sale, and a way to find the root's children.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorCell;

use super::{Engine, EngineSettings};
use crate::actors::live::StockPace;
use crate::actors::sale::product::snapshot_clock::SnapshotPolicy;
use crate::actors::supervision::BackoffPolicy;
use crate::domain::{
    JournalEvent, PaymentWindow, PerUserLimit, Position, ProductDraft, ProductId, SaleWindow, ShardCount, StockLevel,
};
use crate::domain::{PassRefusal, Timestamp, WebhookKey};
use crate::gateway::{PaymentGateway, SimulatedGateway};
use crate::persistence::{Database, Journal, JournalAppend, JournalError, SqlJournal, SqlSnapshots};

/// Reports the next `failures` appends failed, then appends like the SQL journal it wraps. With `lands`, those
/// appends are written all the same: the answer is lost, not the events. It stands in for the writer's role only.
pub struct FlakyAppend {
    failures: Arc<AtomicUsize>,
    lands: bool,
    inner: SqlJournal,
}

impl JournalAppend for FlakyAppend {
    fn append(&self, events: &[JournalEvent]) -> Result<Vec<Position>, JournalError> {
        if self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok() {
            if self.lands {
                self.inner.append(events)?;
            }
            return Err(JournalError::Unavailable("disk on fire".into()));
        }
        self.inner.append(events)
    }
}

/// Appends like the SQL journal it wraps, each batch only after `delay`: its reservations stay in flight that long.
pub struct SlowAppend {
    delay: Duration,
    inner: SqlJournal,
}

impl JournalAppend for SlowAppend {
    fn append(&self, events: &[JournalEvent]) -> Result<Vec<Position>, JournalError> {
        std::thread::sleep(self.delay);
        self.inner.append(events)
    }
}

/// The SQL journal, every append taking `delay`.
pub fn slow(delay: Duration) -> impl FnOnce(SqlJournal) -> Journal {
    move |sql| Journal { append: Arc::new(SlowAppend { delay, inner: sql.clone() }), ..Journal::whole(sql) }
}

/// The SQL journal, with the first `failures` appends refused (`lands`: written all the same).
pub fn flaky(failures: usize, lands: bool) -> impl FnOnce(SqlJournal) -> Journal {
    flaky_on_cue(Arc::new(AtomicUsize::new(failures)), lands)
}

/// The SQL journal, refusing as many appends as `failures` says whenever the test sets it.
pub fn flaky_on_cue(failures: Arc<AtomicUsize>, lands: bool) -> impl FnOnce(SqlJournal) -> Journal {
    move |sql| Journal { append: Arc::new(FlakyAppend { failures, lands, inner: sql.clone() }), ..Journal::whole(sql) }
}

/// The pass of a purchase made without a seckill token.
pub fn no_pass() -> Result<(), PassRefusal> {
    Err(PassRefusal::Missing)
}

pub fn settings() -> EngineSettings {
    EngineSettings {
        purchase_timeout: Duration::from_secs(5),
        journal_max_batch: 64,
        journal_linger: Duration::ZERO,
        snapshots: SnapshotPolicy { every_units: 1_000, every: Duration::from_secs(60), busy_max_units: 10_000 },
        projector_batch: 100,
        projector_poll: Duration::from_millis(50),
        projector_quiet: Duration::from_millis(20),
        projector_max_lag: 10_000,
        supervision: BackoffPolicy {
            base: Duration::from_millis(10),
            factor: 2,
            cap: Duration::from_millis(100),
            jitter: 0.2,
            max_restarts: 3,
            window: Duration::from_secs(10),
            reset_after: Duration::from_secs(30),
        },
        payment_attempts: 3,
        callback_timeout: Duration::from_secs(2),
        refund_waits: vec![Duration::from_millis(20), Duration::from_millis(40)],
        alert_webhook: None,
        stock_pace: StockPace {
            min_gap: Duration::from_millis(20),
            messages_per_second: std::num::NonZeroU32::new(100_000).unwrap(),
        },
        preheat: Duration::from_secs(30),
    }
}

/// An engine on a fresh SQLite file in `dir`, whose journal `wrap` builds around the SQL one.
pub async fn engine(
    dir: &tempfile::TempDir,
    wrap: impl FnOnce(SqlJournal) -> Journal,
    settings: EngineSettings,
) -> Engine {
    let key = Arc::new(WebhookKey::new("a secret for the engine's tests only", Duration::from_secs(300)));
    engine_paying(dir, wrap, settings, Arc::new(SimulatedGateway::silent(key))).await
}

/// The same, paying through `gateway`.
pub async fn engine_paying(
    dir: &tempfile::TempDir,
    wrap: impl FnOnce(SqlJournal) -> Journal,
    settings: EngineSettings,
    gateway: Arc<dyn PaymentGateway>,
) -> Engine {
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let db = Database::connect(&url, 4, Duration::from_secs(5)).unwrap();
    db.migrate().unwrap();
    let journal = wrap(SqlJournal::new(db.clone()));
    let metrics = crate::metrics::Metrics::new().unwrap();
    Engine::start(db.clone(), journal, Arc::new(SqlSnapshots::new(db)), gateway, settings, &metrics).await.unwrap()
}

/// An open sale of `stock` units, one per buyer, over two shards.
pub async fn open_sale(engine: &Engine, stock: i64) -> ProductId {
    let now = Timestamp::now();
    let draft = ProductDraft {
        name: "Phone".into(),
        price_cents: 100,
        stock: StockLevel::try_from(stock).unwrap(),
        per_user_limit: PerUserLimit::try_from(1).unwrap(),
        shards: ShardCount::try_from(2).unwrap(),
        window: SaleWindow::new(now, now.plus(Duration::from_secs(3600))).unwrap(),
        payment_window: PaymentWindow::try_from(60).unwrap(),
        requires_token: false,
    };
    engine.create_product(draft).await.unwrap().id
}

/// The root's running child that takes `M` messages.
pub fn child<M: ractor::Message>(engine: &Engine) -> Option<ActorCell> {
    engine.root.get_children().into_iter().find(|cell| cell.is_message_type_of::<M>() == Some(true))
}

/// Asks `probe` every 10 ms until it holds; fails the test after ten seconds.
pub async fn until<F: std::future::Future<Output = bool>>(what: &str, mut probe: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !probe().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Kills one of `product`'s shards and waits until the product supervisor has recovered the product.
pub async fn restart_product(engine: &Engine, product: ProductId) {
    let before = engine.catalog.get(product).unwrap();
    before.shards[0].kill();
    until("the product is restarted", || {
        let restarted = engine.catalog.get(product).is_some_and(|now| !Arc::ptr_eq(&now, &before));
        async move { restarted }
    })
    .await;
}
