//! The SQL connection pool. One `AnyConnection` type serves PostgreSQL and SQLite, chosen by the URL's scheme, so
//! every store is written once; the rare statement whose SQL differs goes through `per_backend!`.
//!
//! Diesel is blocking, so every use goes through `Database::run`, which takes a pooled connection on tokio's
//! blocking threads and never on an async worker. The connection type and the methods that hand it out are visible
//! inside `persistence` only: the layers above ask the stores' methods, and never hold a connection.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ManageConnection, Pool, R2D2Connection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

#[derive(diesel::MultiConnection)]
pub(in crate::persistence) enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Run `$body` with `$conn` bound to the concrete connection, for SQL only one backend's type system accepts.
macro_rules! per_backend {
    ($any:expr, $conn:ident => $body:expr) => {
        match $any {
            $crate::persistence::db::AnyConnection::Postgresql($conn) => $body,
            $crate::persistence::db::AnyConnection::Sqlite($conn) => $body,
        }
    };
}
pub(in crate::persistence) use per_backend;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Set once per SQLite file, before the pool opens: write-ahead logging, so readers never block the journal writer.
/// It persists in the file; switching while other connections are open would fail.
const SQLITE_FILE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;";

/// Set on every SQLite connection: wait for a busy writer instead of failing, and `FULL` sync so an acknowledged
/// commit survives power loss.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL;";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unreachable: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("cannot open the database: {0}")]
    Open(#[from] diesel::ConnectionError),
    #[error("stored row unreadable: {0}")]
    Corrupt(String),
    #[error("database URL not understood: {0}")]
    Url(String),
    #[error("database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl DbError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
        )
    }
}

/// Which server a URL names, decided once instead of letting each connect attempt guess.
#[derive(Debug, Clone)]
enum Target {
    Postgres(String),
    Sqlite(String),
}

impl Target {
    fn parse(url: &str) -> Result<Self, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Target::Postgres(url.to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Ok(Target::Sqlite(path.to_owned()))
        } else {
            Err(DbError::Url("expected postgres://… or sqlite://PATH".into()))
        }
    }
}

/// r2d2 manager that opens the backend the URL names.
#[derive(Debug)]
pub(in crate::persistence) struct Manager(Target);

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        match &self.0 {
            Target::Postgres(url) => PgConnection::establish(url)
                .map(AnyConnection::Postgresql)
                .map_err(diesel::r2d2::Error::ConnectionError),
            Target::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path).map_err(diesel::r2d2::Error::ConnectionError)?;
                conn.batch_execute(SQLITE_PRAGMAS).map_err(diesel::r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        conn.is_broken()
    }
}

/// A pool of connections to the orders, users and journal database.
///
/// SQLite admits one writer at a time and makes the others poll with growing sleeps, which turns every contended
/// journal commit into a latency spike. So for SQLite, writers queue on `write_turn` instead — a wake-up, not a
/// sleep — and never meet inside SQLite. PostgreSQL needs no such queue.
#[derive(Clone)]
pub struct Database {
    pool: Pool<Manager>,
    write_turn: Option<Arc<Mutex<()>>>,
}

impl Database {
    /// Opens the pool; a SQLite file's folder is created if missing. Fails if the server cannot be reached.
    pub fn connect(url: &str, pool_size: u32, connect_timeout: Duration) -> Result<Self, DbError> {
        let target = Target::parse(url)?;
        if let Target::Sqlite(path) = &target {
            if let Some(dir) = Path::new(path).parent().filter(|dir| !dir.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|err| DbError::Url(format!("{}: {err}", dir.display())))?;
            }
            SqliteConnection::establish(path)?.batch_execute(SQLITE_FILE_PRAGMAS)?;
        }
        let write_turn = matches!(target, Target::Sqlite(_)).then(|| Arc::new(Mutex::new(())));
        let pool = Pool::builder().max_size(pool_size).connection_timeout(connect_timeout).build(Manager(target))?;
        Ok(Self { pool, write_turn })
    }

    /// Applies every pending migration of this backend; returns their names.
    pub fn migrate(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.pool.get()?;
        let applied = match &mut *conn {
            AnyConnection::Postgresql(conn) => conn.run_pending_migrations(POSTGRES_MIGRATIONS),
            AnyConnection::Sqlite(conn) => conn.run_pending_migrations(SQLITE_MIGRATIONS),
        }
        .map_err(|err| DbError::Migration(err.to_string()))?;
        Ok(applied.iter().map(ToString::to_string).collect())
    }

    /// Whether the database answers: a pooled connection, checked on a blocking thread.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|_| Ok(())).await
    }

    /// Runs `work`, which only reads, with a pooled connection on a blocking thread.
    pub(in crate::persistence) async fn run<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        self.on_blocking_thread(None, work).await
    }

    /// Runs `work`, which writes, with a pooled connection on a blocking thread, in turn with other writers.
    pub(in crate::persistence) async fn write<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        self.on_blocking_thread(self.write_turn.clone(), work).await
    }

    /// Runs `work`, which writes, on the calling thread, in turn with other writers: for a thread of its own that
    /// may block, such as the journal writer's, which then needs no hop to the blocking pool and back.
    pub(in crate::persistence) fn write_blocking<T>(
        &self,
        work: impl FnOnce(&mut AnyConnection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        with_connection(&self.pool, self.write_turn.as_deref(), work)
    }

    async fn on_blocking_thread<T, F>(&self, turn: Option<Arc<Mutex<()>>>, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || with_connection(&pool, turn.as_deref(), work)).await?
    }
}

/// Runs `work` with a pooled connection, holding `turn` (if any) meanwhile.
fn with_connection<T>(
    pool: &Pool<Manager>,
    turn: Option<&Mutex<()>>,
    work: impl FnOnce(&mut AnyConnection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    let mut conn = pool.get()?;
    let _turn = turn.map(lock);
    work(&mut conn)
}

/// Locks `mutex`; a panic elsewhere while it was held leaves plain data behind, still fit to use.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
