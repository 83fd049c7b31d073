//! Building and stopping the whole service: database and migrations, the admin account, the actor system, and the
//! HTTP server on its listener. `main` and the integration tests start the service the same way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::accounts::{Accounts, AccountsError, HashPool};
use crate::actors::{Engine, EngineError};
use crate::config::{ConfigError, JournalBackend, PaymentProvider, Settings, SnapshotBackend};
use crate::domain::{PlainPassword, Timestamp, Username, WebhookKey};
use crate::gateway::{PaymentGateway, SimulatedGateway, SimulatorKnobs};
use crate::http::{self, AppState, ConnectionSettings, LimitError, Live, Passes, RateLimits, Tokens};
use crate::metrics::{Metrics, MetricsError};
use crate::persistence::{
    Database, DbError, Journal, JournalError, KafkaConfig, RedisSnapshots, SnapshotError, SnapshotStore, SqlJournal,
    SqlSnapshots,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Snapshots(#[from] SnapshotError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("admin account: {0}")]
    Admin(String),
    #[error("cannot start the password hashing threads: {0}")]
    Hashing(std::io::Error),
    #[error("rate limits: {0}")]
    Limits(#[from] LimitError),
    #[error("cannot start the live connections' runtime: {0}")]
    Live(std::io::Error),
    #[error(transparent)]
    Connections(ConfigError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// A running service.
pub struct App {
    addr: SocketAddr,
    engine: Arc<Engine>,
    stop_serving: oneshot::Sender<()>,
    /// Closes the live connections, which outlive the server's graceful shutdown otherwise.
    closing: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl App {
    /// Connects, migrates, recovers every product and starts listening (port 0 picks a free port).
    pub async fn start(settings: &Settings) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new()?);
        let db = open_database(settings)?;
        let accounts = Arc::new(open_accounts(&db, settings).await?);
        let journal = open_journal(settings, &db).await?;
        let snapshots = snapshot_store(settings, &db)?;
        // Listening first, so the payment provider knows where to call back before any payment starts.
        let listen = settings.server.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Listen { addr: listen, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen { addr: listen, source })?;
        let webhook = Arc::new(WebhookKey::new(
            settings.payments.webhook_secret.expose(),
            Duration::from_secs(settings.payments.webhook_tolerance_secs),
        ));
        let gateway = payment_gateway(settings, addr, Arc::clone(&webhook));
        let engine =
            Arc::new(Engine::start(db.clone(), journal, snapshots, gateway, settings.engine(), &metrics).await?);
        let closing = watch::Sender::new(false);
        let limits = Arc::new(RateLimits::new(settings.limits.buckets(), settings.limits.max_keys)?);
        let passes = Arc::new(Passes::new(Duration::from_secs(settings.sale.token_ttl_secs)));
        let state = AppState {
            engine: Arc::clone(&engine),
            accounts,
            tokens: Arc::new(Tokens::new(
                settings.auth.jwt_secret.expose(),
                Duration::from_secs(settings.auth.token_ttl_secs),
            )),
            default_shards: settings.default_shards(),
            default_payment_window: settings.sale.payment_window_secs,
            body_limit: settings.server.body_limit_bytes,
            body_timeout: Duration::from_millis(settings.server.body_timeout_ms),
            webhook,
            live: Arc::new(Live::new(&settings.live, closing.subscribe()).map_err(StartError::Live)?),
            limits: Arc::clone(&limits),
            passes: Arc::clone(&passes),
            metrics: Arc::clone(&metrics),
        };
        let sweep_limits = Duration::from_millis(settings.limits.sweep_ms.max(1));
        tokio::spawn(every(sweep_limits, closing.subscribe(), move || limits.sweep()));
        tokio::spawn(every(Duration::from_secs(1), closing.subscribe(), move || passes.sweep(Timestamp::now())));
        let (stop_serving, stopped) = oneshot::channel::<()>();
        let connections = within_descriptors(settings.server.connections().map_err(StartError::Connections)?);
        let server = tokio::spawn(http::serve(listener, http::routes(state), connections, &metrics.http, async move {
            let _ = stopped.await;
        }));
        tracing::info!(%addr, "seckill listening");
        Ok(Self { addr, engine, stop_serving, closing, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking requests, lets open ones finish, flushes the journal and snapshots every product.
    pub async fn stop(self) {
        self.closing.send_replace(true);
        let _ = self.stop_serving.send(());
        let _ = self.server.await;
        self.engine.shutdown().await;
        tracing::info!("seckill stopped");
    }
}

/// The connection caps, lowered to what the process may open: its file descriptor limit raised as far as the
/// system lets it, less a reserve for the database, the broker, the snapshot store and the files. A cap above that
/// would not hold: past the limit, accepting fails instead of refusing.
fn within_descriptors(mut connections: ConnectionSettings) -> ConnectionSettings {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed, which lives for the calls.
    let open = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return connections;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    };
    let usable = open.saturating_sub((open / 10).max(256));
    if connections.max_connections > usable {
        tracing::warn!(
            configured = connections.max_connections,
            allowed = usable,
            open_files = open,
            "server.max_connections lowered to what the file descriptor limit allows"
        );
        connections.max_connections = usable;
    }
    connections
}

/// Runs `work` every `period` until `closing`: the sweeps of what the edge remembers per client.
async fn every(period: Duration, mut closing: watch::Receiver<bool>, work: impl Fn()) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => work(),
            _ = closing.wait_for(|closing| *closing) => return,
        }
    }
}

/// Opens the configured database and applies its migrations.
pub fn open_database(settings: &Settings) -> Result<Database, DbError> {
    let db = Database::connect(
        settings.database.url.expose(),
        settings.database.pool_size,
        Duration::from_millis(settings.database.connect_timeout_ms),
    )?;
    let applied = db.migrate()?;
    if !applied.is_empty() {
        tracing::info!(?applied, "migrations applied");
    }
    Ok(db)
}

/// The configured journal.
pub async fn open_journal(settings: &Settings, db: &Database) -> Result<Journal, JournalError> {
    match settings.journal.backend {
        JournalBackend::Sql => Ok(Journal::whole(SqlJournal::new(db.clone()))),
        JournalBackend::Kafka => kafka_journal(settings.journal.kafka.journal()).await,
    }
}

#[cfg(feature = "kafka")]
async fn kafka_journal(config: KafkaConfig) -> Result<Journal, JournalError> {
    crate::persistence::kafka::connect(config).await
}

#[cfg(not(feature = "kafka"))]
async fn kafka_journal(_: KafkaConfig) -> Result<Journal, JournalError> {
    Err(JournalError::Unavailable(
        "journal.backend is \"kafka\", but this build has no Kafka support: build with `--features kafka`".into(),
    ))
}

/// The configured payment provider, calling back to `callback_url` or else to this service at `addr`.
fn payment_gateway(settings: &Settings, addr: SocketAddr, key: Arc<WebhookKey>) -> Arc<dyn PaymentGateway> {
    let payments = &settings.payments;
    match payments.provider {
        PaymentProvider::Simulated => {
            let knobs = SimulatorKnobs {
                latency_ms: payments.simulator.latency_ms,
                failure_rate: payments.simulator.failure_rate,
                fail_next: 0,
                silent: false,
            };
            let gateway = SimulatedGateway::new(knobs, key);
            let url = match payments.callback_url.trim() {
                "" => {
                    let local = SocketAddr::from(([127, 0, 0, 1], addr.port()));
                    format!("http://{}/api/v1/payments/callback", if addr.ip().is_unspecified() { local } else { addr })
                }
                url => url.to_owned(),
            };
            gateway.call_back_to(url);
            Arc::new(gateway)
        }
    }
}

/// The configured snapshot store.
fn snapshot_store(settings: &Settings, db: &Database) -> Result<Arc<dyn SnapshotStore>, SnapshotError> {
    let snapshots = &settings.snapshots;
    Ok(match snapshots.store {
        SnapshotBackend::Sql => Arc::new(SqlSnapshots::new(db.clone())),
        SnapshotBackend::Redis => Arc::new(RedisSnapshots::new(
            snapshots.redis_url.expose(),
            &snapshots.redis_prefix,
            Duration::from_millis(snapshots.redis_timeout_ms),
        )?),
    })
}

/// The accounts service, once the configured admin can log in with the configured password.
async fn open_accounts(db: &Database, settings: &Settings) -> Result<Accounts, StartError> {
    let name = Username::try_from(settings.admin.username.clone()).map_err(|err| StartError::Admin(err.to_string()))?;
    let password = PlainPassword::try_from(settings.admin.password.expose().to_owned())
        .map_err(|err| StartError::Admin(err.to_string()))?;
    let hashing = HashPool::new(settings.auth.hash_threads(), settings.auth.hash_queue).map_err(StartError::Hashing)?;
    Accounts::bootstrap(db.clone(), hashing, name, password).await.map_err(|err| match err {
        AccountsError::Database(err) => StartError::Database(err),
        other => StartError::Admin(other.to_string()),
    })
}
