//! Backends of a test's own: a fresh SQLite file, or a fresh PostgreSQL database (dropped afterwards), and for the
//! production backends a Kafka topic and group and a Redis key prefix nobody else uses.

use diesel::{Connection, PgConnection, RunQueryDsl};
use seckill::config::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// PostgreSQL, the Kafka journal and Redis snapshots: `config/production.toml`'s backends.
    Production,
}

pub fn postgres_admin_url() -> String {
    std::env::var("SECKILL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn kafka_brokers() -> String {
    std::env::var("SECKILL_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn redis_url() -> String {
    std::env::var("SECKILL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Backends nobody else uses (a database, and for production a topic, a group and a key prefix), the settings
/// that point at them, and how to get rid of the database.
pub struct Scratch {
    pub url: String,
    overrides: Vec<(String, String)>,
    dir: Option<tempfile::TempDir>,
    /// The data folder's secrets: the JWT and webhook secrets every service on this scratch draws and shares.
    secrets: tempfile::TempDir,
    postgres_name: Option<String>,
}

impl Scratch {
    pub fn new(backend: Backend) -> Self {
        let mut scratch = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("seckill.db").display());
                Self::on(url, Some(dir), None)
            }
            Backend::Postgres | Backend::Production => {
                let admin_url = postgres_admin_url();
                let name = format!("seckill_test_{}", uuid::Uuid::now_v7().simple());
                let mut conn = PgConnection::establish(&admin_url)
                    .unwrap_or_else(|err| panic!("PostgreSQL is required at {admin_url} (start it first): {err}"));
                diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).expect("create database");
                let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
                Self::on(format!("{base}/{name}"), None, Some(name))
            }
        };
        if backend == Backend::Production {
            scratch = scratch.with_production_backends();
        }
        scratch
    }

    /// The Kafka journal (a topic and group of its own) and Redis snapshots (a key prefix of its own).
    pub fn with_production_backends(mut self) -> Self {
        let own = format!("seckill-test-{}", uuid::Uuid::now_v7().simple());
        self.set("journal.backend", "kafka");
        self.set("journal.kafka.brokers", &kafka_brokers());
        self.set("journal.kafka.topic", &own);
        self.set("journal.kafka.group", &own);
        self.set("snapshots.store", "redis");
        self.set("snapshots.redis_url", &redis_url());
        self.set("snapshots.redis_prefix", &own);
        self
    }

    /// A database someone else created and will clean up.
    pub fn existing(url: String) -> Self {
        Self::on(url, None, None)
    }

    /// Settings every test shares: the admin's password and the webhook secret, a secrets folder of the scratch's
    /// own (for the JWT secret it draws), and no cap on
    /// connections from one address (every test's clients are on 127.0.0.1; the cap has a test of its own).
    fn on(url: String, dir: Option<tempfile::TempDir>, postgres_name: Option<String>) -> Self {
        let secrets = tempfile::tempdir().expect("temp dir");
        let mut scratch = Self { url, overrides: Vec::new(), dir, secrets, postgres_name };
        let folder = scratch.secrets.path().display().to_string();
        scratch.set("secrets.dir", &folder);
        scratch.set("admin.password", super::ADMIN_PASSWORD);
        scratch.set("payments.webhook_secret", super::WEBHOOK_SECRET);
        scratch.set("server.max_connections_per_ip", "1000000");
        scratch
    }

    /// Sets dotted `key` for every service started on this scratch.
    pub fn set(&mut self, key: &str, value: &str) {
        self.overrides.push((key.to_owned(), value.to_owned()));
    }

    /// Everything that differs from `config/default.toml`, as dotted keys and values.
    pub fn overrides(&self) -> Vec<(String, String)> {
        let mut all = vec![("database.url".to_owned(), self.url.clone())];
        all.extend(self.overrides.iter().cloned());
        all
    }

    /// The same, as the environment of a `seckill` process.
    pub fn env(&self) -> Vec<(String, String)> {
        self.overrides().into_iter().map(|(key, value)| (Settings::env_var(&key), value)).collect()
    }

    pub fn settings(&self) -> Settings {
        let mut overrides = self.overrides();
        overrides.extend(
            [
                ("server.listen", "127.0.0.1:0"),
                ("snapshots.every_units", "50"),
                ("snapshots.busy_max_units", "200"),
                ("projector.poll_ms", "50"),
            ]
            .map(|(key, value)| (key.to_owned(), value.to_owned())),
        );
        Settings::load_with(None, &overrides).expect("test settings")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(name) = &self.postgres_name {
            if let Ok(mut conn) = PgConnection::establish(&postgres_admin_url()) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn);
            }
        }
        let _ = self.dir.take();
    }
}
