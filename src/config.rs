//! Settings: `config/default.toml` (or the file given with `--config`), then `SECKILL__SECTION__KEY` environment
//! variables on top. Secrets are wrapped so that printing the settings never shows them.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use warp::http::HeaderValue;

use crate::actors::{BackoffPolicy, EngineSettings, SnapshotPolicy, StockPace};
use crate::domain::{PaymentWindow, ShardCount};
use crate::http::{ConnectionSettings, Limit, LimitSettings};
use crate::persistence::KafkaConfig;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub journal: JournalSettings,
    pub snapshots: SnapshotSettings,
    pub projector: ProjectorSettings,
    pub sale: SaleSettings,
    pub supervision: SupervisionSettings,
    pub payments: PaymentSettings,
    pub compensation: CompensationSettings,
    pub live: LiveSettings,
    pub limits: LimitsSettings,
    pub auth: AuthSettings,
    pub admin: AdminSettings,
    pub secrets: SecretsSettings,
    pub log: LogSettings,
    pub telemetry: TelemetrySettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub body_limit_bytes: u64,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Origins whose pages may call the API from a browser; empty: none but the service's own.
    #[serde(default)]
    pub cors_origins: Vec<String>,
}

impl ServerSettings {
    pub fn connections(&self) -> Result<ConnectionSettings, ConfigError> {
        let origin = |origin: &String| {
            let url = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            let value = HeaderValue::from_str(origin).ok().filter(|_| url.is_some_and(|host| !host.is_empty()));
            value.ok_or_else(|| ConfigError(format!("server.cors_origins: {origin:?} is not an origin")))
        };
        Ok(ConnectionSettings {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            cors_origins: self.cors_origins.iter().map(origin).collect::<Result<_, _>>()?,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: Secret,
    pub pool_size: u32,
    pub connect_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JournalSettings {
    pub backend: JournalBackend,
    pub max_batch: usize,
    pub linger_ms: u64,
    pub kafka: KafkaSettings,
}

/// Where the journal is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalBackend {
    Sql,
    Kafka,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic: String,
    pub partitions: i32,
    pub replication: i32,
    pub group: String,
    pub delivery_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub connect_wait_ms: u64,
    pub linger_ms: u64,
}

impl KafkaSettings {
    pub fn journal(&self) -> KafkaConfig {
        KafkaConfig {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            partitions: self.partitions,
            replication: self.replication,
            group: self.group.clone(),
            delivery_timeout: Duration::from_millis(self.delivery_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            connect_wait: Duration::from_millis(self.connect_wait_ms),
            linger: Duration::from_millis(self.linger_ms),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotSettings {
    pub every_units: u64,
    pub every_secs: u64,
    pub busy_max_units: u64,
    pub store: SnapshotBackend,
    pub redis_url: Secret,
    pub redis_prefix: String,
    pub redis_timeout_ms: u64,
}

/// Where product snapshots are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotBackend {
    Sql,
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProjectorSettings {
    pub batch: usize,
    pub poll_ms: u64,
    pub quiet_ms: u64,
    pub max_lag: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SaleSettings {
    /// For sales created without a window of their own.
    pub payment_window_secs: PaymentWindow,
    pub purchase_timeout_ms: u64,
    pub default_shards: u32,
    pub preheat_secs: u64,
    /// How long a seckill token lives.
    pub token_ttl_secs: u64,
}

/// Rate limits: the buckets an admin may replace at runtime, and the bounds of their keys.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitsSettings {
    pub global: Limit,
    pub user: Limit,
    pub ip: Limit,
    pub login_ip: Limit,
    pub login_user: Limit,
    pub max_keys: usize,
    pub sweep_ms: u64,
}

impl LimitsSettings {
    pub fn buckets(&self) -> LimitSettings {
        LimitSettings {
            global: self.global,
            user: self.user,
            ip: self.ip,
            login_ip: self.login_ip,
            login_user: self.login_user,
        }
    }
}

/// The WebSocket feeds (`/ws/stock`, `/ws/orders`).
#[derive(Debug, Clone, Deserialize)]
pub struct LiveSettings {
    pub threads: usize,
    pub max_stock_subscribers: usize,
    pub max_order_subscribers: usize,
    pub max_products_per_subscriber: usize,
    pub stock_interval_ms: u64,
    pub stock_messages_per_second: u32,
    pub heartbeat_secs: u64,
    pub ping_secs: u64,
    pub send_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SupervisionSettings {
    pub backoff_base_ms: u64,
    pub backoff_factor: u32,
    pub backoff_cap_ms: u64,
    pub backoff_jitter: f64,
    pub max_restarts: usize,
    pub restart_window_secs: u64,
    pub reset_after_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentSettings {
    pub provider: PaymentProvider,
    #[serde(default)]
    pub webhook_secret: Secret,
    pub webhook_tolerance_secs: u64,
    pub attempts: u32,
    pub callback_timeout_ms: u64,
    /// Empty: the service's own callback route.
    pub callback_url: String,
    pub simulator: SimulatorSettings,
}

/// Which payment provider the service talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentProvider {
    Simulated,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SimulatorSettings {
    pub latency_ms: u64,
    pub failure_rate: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompensationSettings {
    /// Comma-separated waits in milliseconds.
    pub retry_waits_ms: String,
    /// Empty: no alert.
    pub alert_webhook_url: String,
}

impl CompensationSettings {
    pub fn retry_waits(&self) -> Result<Vec<Duration>, ConfigError> {
        self.retry_waits_ms
            .split(',')
            .map(str::trim)
            .filter(|wait| !wait.is_empty())
            .map(|wait| {
                wait.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                    ConfigError(format!("compensation.retry_waits_ms: {wait:?} is not a number of milliseconds"))
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    #[serde(default)]
    pub jwt_secret: Secret,
    pub token_ttl_secs: u64,
    /// Password hashing threads; 0 means a quarter of the cores (at least one).
    pub hash_threads: usize,
    /// Logins and registrations that may wait for a hashing thread; past this they are refused at once.
    pub hash_queue: usize,
}

impl AuthSettings {
    pub fn hash_threads(&self) -> usize {
        match self.hash_threads {
            0 => std::thread::available_parallelism().map_or(1, |cores| cores.get() / 4).max(1),
            threads => threads,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AdminSettings {
    pub username: String,
    /// The admin account's password when it is created; never applied to an account that exists.
    #[serde(default)]
    pub password: Secret,
}

/// Secrets the configuration leaves unset: drawn and kept in `dir` (the embedded default), or refused (production).
#[derive(Debug, Clone, Deserialize)]
pub struct SecretsSettings {
    pub dir: PathBuf,
    pub generate: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// Traces: where spans are sent, and how many. No endpoint, no traces.
#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// The collector's OTLP/HTTP address, `http://host:4318` (spans go to its `/v1/traces`) or the whole URL
    /// ending in `/v1/traces`; empty: no traces. Kept from logs, as it may carry credentials.
    pub otlp_endpoint: Secret,
    pub service_name: String,
    /// Share of traces kept, 0.0 to 1.0, decided where a trace starts; the spans of a kept trace are all kept.
    pub sample_ratio: f64,
    /// Finished spans waiting for export at most; past it, new ones are dropped.
    pub max_queue: usize,
    /// How often waiting spans are sent.
    pub export_interval_ms: u64,
    /// An export the collector has not answered in this time is given up (its spans are dropped).
    pub export_timeout_ms: u64,
}

impl TelemetrySettings {
    /// Where spans are sent, if anywhere.
    pub fn traces_url(&self) -> Result<Option<String>, ConfigError> {
        let endpoint = self.otlp_endpoint.expose().trim().trim_end_matches('/');
        if endpoint.is_empty() {
            return Ok(None);
        }
        let url = match endpoint.ends_with("/v1/traces") {
            true => endpoint.to_owned(),
            false => format!("{endpoint}/v1/traces"),
        };
        // This build speaks plain HTTP only (no TLS stack): a collector on the host or in the network forwards on.
        let plain = endpoint.strip_prefix("http://").is_some_and(|rest| !rest.is_empty());
        if !plain || url.parse::<warp::http::Uri>().is_err() {
            return Err(ConfigError(
                "telemetry.otlp_endpoint is not an http:// URL (send to a collector that forwards over TLS)".into(),
            ));
        }
        Ok(Some(url))
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.traces_url()?;
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError(format!("telemetry.sample_ratio: {} is not between 0 and 1", self.sample_ratio)));
        }
        if self.max_queue == 0 || self.export_interval_ms == 0 || self.export_timeout_ms == 0 {
            return Err(ConfigError(
                "telemetry.max_queue, export_interval_ms and export_timeout_ms must be above 0".into(),
            ));
        }
        Ok(())
    }
}

/// A value that must never reach a log: `Debug` prints `<redacted>`. Empty means not set.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Reads `path` (default `config/default.toml`), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(path, &[])
    }

    /// Like `load`, then `overrides` on top: pairs of a dotted key (`journal.kafka.topic`) and its value, which
    /// mean the same as the environment variable `env_var(key)` set to that value.
    pub fn load_with(path: Option<&Path>, overrides: &[(String, String)]) -> Result<Self, ConfigError> {
        let path = path.unwrap_or(Path::new("config/default.toml"));
        let mut builder = config::Config::builder()
            .add_source(config::File::from(path))
            .add_source(config::Environment::with_prefix("SECKILL").prefix_separator("__").separator("__"));
        for (key, value) in overrides {
            builder = builder.set_override(key.as_str(), value.as_str()).map_err(|err| ConfigError(err.to_string()))?;
        }
        let mut settings: Settings = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|err| ConfigError(format!("{}: {err}", path.display())))?;
        settings.fill_secrets()?;
        settings.server.connections()?;
        if settings.auth.jwt_secret.expose().len() < 32 {
            return Err(ConfigError("auth.jwt_secret must be at least 32 characters".into()));
        }
        if settings.payments.webhook_secret.expose().len() < 32 {
            return Err(ConfigError("payments.webhook_secret must be at least 32 characters".into()));
        }
        settings.compensation.retry_waits()?;
        settings.telemetry.check()?;
        Ok(settings)
    }

    /// Every secret left unset drawn and kept in `secrets.dir`, or, where the configuration draws none, a refusal
    /// naming each variable to set. A freshly drawn admin password is printed, this once, for whoever started the
    /// service; it stays in its file for the README's walk-through and for the next start.
    fn fill_secrets(&mut self) -> Result<(), ConfigError> {
        let generate = self.secrets.generate;
        let dir = self.secrets.dir.clone();
        // (key, file, what it must be, random bytes drawn, whether to print it, the setting)
        let wanted = [
            ("auth.jwt_secret", "jwt-secret", "32+ characters", 32, false, &mut self.auth.jwt_secret),
            (
                "payments.webhook_secret",
                "webhook-secret",
                "32+ characters, shared with the payment provider",
                32,
                false,
                &mut self.payments.webhook_secret,
            ),
            ("admin.password", "admin-password", "the admin's first password", 18, true, &mut self.admin.password),
        ];
        let mut missing = Vec::new();
        for (key, file, rule, bytes, print, secret) in wanted {
            if !secret.0.is_empty() {
                continue;
            }
            if !generate {
                missing.push(format!("{} ({rule})", Self::env_var(key)));
                continue;
            }
            let (value, origin) =
                crate::secrets::kept(&dir, file, bytes).map_err(|err| ConfigError(format!("{key}: {err}")))?;
            if print && origin == crate::secrets::Origin::Drawn {
                eprintln!(
                    "seckill: drew a password for the admin account {:?}: {value}\n\
                     seckill: it is kept in {} (readable by you only) and printed this once",
                    self.admin.username,
                    dir.join(file).display()
                );
            }
            secret.0 = value;
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(format!(
                "this configuration draws no secrets of its own (secrets.generate = false); set {}",
                missing.join(", ")
            )))
        }
    }

    /// The environment variable that sets dotted `key`: `journal.kafka.topic` → `SECKILL__JOURNAL__KAFKA__TOPIC`.
    pub fn env_var(key: &str) -> String {
        format!("SECKILL__{}", key.replace('.', "__").to_uppercase())
    }

    pub fn default_shards(&self) -> ShardCount {
        ShardCount::try_from(i64::from(self.sale.default_shards)).unwrap_or_else(|_| ShardCount::per_core())
    }

    pub fn engine(&self) -> EngineSettings {
        let supervision = &self.supervision;
        let alert = self.compensation.alert_webhook_url.trim();
        EngineSettings {
            purchase_timeout: Duration::from_millis(self.sale.purchase_timeout_ms),
            preheat: Duration::from_secs(self.sale.preheat_secs),
            journal_max_batch: self.journal.max_batch,
            journal_linger: Duration::from_millis(self.journal.linger_ms),
            snapshots: SnapshotPolicy {
                every_units: self.snapshots.every_units,
                every: Duration::from_secs(self.snapshots.every_secs),
                busy_max_units: self.snapshots.busy_max_units,
            },
            projector_batch: self.projector.batch,
            projector_poll: Duration::from_millis(self.projector.poll_ms),
            projector_quiet: Duration::from_millis(self.projector.quiet_ms),
            projector_max_lag: self.projector.max_lag,
            supervision: BackoffPolicy {
                base: Duration::from_millis(supervision.backoff_base_ms),
                factor: supervision.backoff_factor,
                cap: Duration::from_millis(supervision.backoff_cap_ms),
                jitter: supervision.backoff_jitter,
                max_restarts: supervision.max_restarts,
                window: Duration::from_secs(supervision.restart_window_secs),
                reset_after: Duration::from_secs(supervision.reset_after_secs),
            },
            payment_attempts: self.payments.attempts,
            callback_timeout: Duration::from_millis(self.payments.callback_timeout_ms),
            refund_waits: self.compensation.retry_waits().unwrap_or_default(),
            alert_webhook: (!alert.is_empty()).then(|| alert.to_owned()),
            stock_pace: StockPace {
                min_gap: Duration::from_millis(self.live.stock_interval_ms.max(1)),
                messages_per_second: NonZeroU32::new(self.live.stock_messages_per_second).unwrap_or(NonZeroU32::MIN),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `load_with`, drawing whatever secrets it needs into a folder of the test's own, not the checkout's `data/`.
    fn load(path: Option<&Path>, overrides: &[(String, String)]) -> Result<Settings, ConfigError> {
        let folder = tempfile::tempdir().expect("temp dir");
        let mut all = vec![("secrets.dir".to_owned(), folder.path().display().to_string())];
        all.extend_from_slice(overrides);
        Settings::load_with(path, &all)
    }

    #[test]
    fn default_file_loads_and_hides_secrets() {
        let settings = load(None, &[]).expect("config/default.toml loads");
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
        let printed = format!("{settings:?}");
        assert!(!printed.contains(settings.auth.jwt_secret.expose()));
        assert!(!printed.contains(settings.admin.password.expose()));
        assert!(!printed.contains(settings.payments.webhook_secret.expose()));
        let waits = settings.compensation.retry_waits().unwrap();
        assert_eq!(waits, [10, 30, 60].map(Duration::from_secs), "the seeds' tiers");
        assert_eq!(settings.snapshots.store, SnapshotBackend::Sql);
        assert_eq!(settings.journal.backend, JournalBackend::Sql);
    }

    /// An override with a dotted key means what the environment variable `env_var(key)` means, and both go over the
    /// file. This sets a real variable: tests run on threads of one process and share its environment, so this is
    /// the only test that sets one, and the only one that reads `sale.purchase_timeout_ms`.
    #[test]
    fn overrides_use_the_environment_variables_names() {
        let topic = ("journal.kafka.topic".to_owned(), "elsewhere".to_owned());
        let settings = load(None, &[topic]).expect("loads with an override");
        assert_eq!(settings.journal.kafka.topic, "elsewhere");
        assert_eq!(Settings::env_var("journal.kafka.topic"), "SECKILL__JOURNAL__KAFKA__TOPIC");

        let key = "sale.purchase_timeout_ms";
        let var = Settings::env_var(key);
        assert_eq!(var, "SECKILL__SALE__PURCHASE_TIMEOUT_MS");
        let outside = std::env::var_os(&var);
        let before = load(None, &[]).expect("loads").sale.purchase_timeout_ms;
        assert_ne!(before, 1234, "the file does not already say what the variable will");
        std::env::set_var(&var, "1234");
        let from_env = load(None, &[]).map(|settings| settings.sale.purchase_timeout_ms);
        let overridden =
            load(None, &[(key.to_owned(), "4321".to_owned())]).map(|settings| settings.sale.purchase_timeout_ms);
        match outside {
            Some(value) => std::env::set_var(&var, value),
            None => std::env::remove_var(&var),
        }
        assert_eq!(from_env.expect("loads with the variable set"), 1234, "{var} goes over the file");
        assert_eq!(overridden.expect("loads with an override"), 4321, "an override goes over {var}");
        assert_eq!(load(None, &[]).expect("loads").sale.purchase_timeout_ms, before, "{var} is as before");
    }

    #[test]
    fn traces_go_nowhere_unless_configured_and_only_to_a_plain_http_collector() {
        let settings = load(None, &[]).expect("loads");
        assert_eq!(settings.telemetry.traces_url().unwrap(), None, "no exporter by default");
        let url = |endpoint: &str| {
            let otlp_endpoint = Secret::from(endpoint.to_owned());
            TelemetrySettings { otlp_endpoint, ..settings.telemetry.clone() }.traces_url()
        };
        let traces = Some("http://collector:4318/v1/traces".to_owned());
        assert_eq!(url("http://collector:4318").unwrap(), traces, "spans go to the collector's /v1/traces");
        assert_eq!(url(" http://collector:4318/ ").unwrap(), traces);
        assert_eq!(url("http://collector:4318/v1/traces").unwrap(), traces, "a whole URL is taken as it is");
        for refused in ["https://collector:4318", "collector:4318", "http://", "http://a collector"] {
            assert!(url(refused).is_err(), "{refused} is refused");
        }
        let credentials = url("https://user:password@collector").expect_err("refused").to_string();
        assert!(!credentials.contains("password"), "the refusal does not show the address: {credentials}");
        let endpoint = ("telemetry.otlp_endpoint".to_owned(), "http://127.0.0.1:4318".to_owned());
        let on = load(None, &[endpoint]).expect("loads with an endpoint");
        assert_eq!(on.telemetry.traces_url().unwrap().as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
        let ratio = ("telemetry.sample_ratio".to_owned(), "1.5".to_owned());
        let refused = load(None, &[ratio]).expect_err("a ratio above 1").to_string();
        assert!(refused.contains("telemetry.sample_ratio"), "{refused}");
    }

    #[test]
    fn production_file_wires_postgres_redis_and_kafka() {
        let production = Some(Path::new("config/production.toml"));
        let refused = load(production, &[]).expect_err("production draws no secrets").to_string();
        for variable in ["SECKILL__AUTH__JWT_SECRET", "SECKILL__ADMIN__PASSWORD", "SECKILL__PAYMENTS__WEBHOOK_SECRET"] {
            assert!(refused.contains(variable), "the refusal names {variable}: {refused}");
        }
        let secrets = [
            ("auth.jwt_secret", "a-jwt-secret-of-thirty-two-characters-or-more"),
            ("admin.password", "an admin password"),
            ("payments.webhook_secret", "a-webhook-secret-of-thirty-two-characters-or-more"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()));
        let settings = load(production, &secrets).expect("production.toml loads with its secrets set");
        assert!(settings.database.url.expose().starts_with("postgres://"));
        assert_eq!(settings.snapshots.store, SnapshotBackend::Redis);
        assert_eq!(settings.journal.backend, JournalBackend::Kafka);
        assert_eq!(settings.journal.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(settings.log.format, LogFormat::Json);
    }
}
