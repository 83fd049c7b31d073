//! Snapshots in Redis, one key per product (`{prefix}:snapshot:{product}`). Redis is an accelerator here, never a
//! dependency of sales: the connection is made lazily and re-made after Redis returns, and every call is bounded by
//! a timeout, so a Redis that is down or empty only makes recovery replay more of the journal.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use super::snapshots::{decode, encode, SnapshotError, SnapshotStore};
use crate::domain::{ProductId, StockSnapshot};

pub struct RedisSnapshots {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl RedisSnapshots {
    /// Prepares the store without connecting; call it inside a tokio runtime.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, SnapshotError> {
        let client = redis::Client::open(url).map_err(|err| SnapshotError::Unavailable(err.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|err| SnapshotError::Unavailable(err.to_string()))?;
        Ok(Self { connection, prefix: prefix.to_owned(), timeout })
    }

    fn key(&self, product: ProductId) -> String {
        format!("{}:snapshot:{product}", self.prefix)
    }

    /// Runs one Redis command, giving up after the timeout.
    async fn bounded<T>(
        &self,
        command: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, SnapshotError> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(SnapshotError::Unavailable(err.to_string())),
            Err(_) => Err(SnapshotError::Unavailable(format!("redis did not answer within {:?}", self.timeout))),
        }
    }
}

#[async_trait]
impl SnapshotStore for RedisSnapshots {
    async fn save(&self, product: ProductId, snapshot: StockSnapshot) -> Result<(), SnapshotError> {
        let body = encode(snapshot).await?;
        let mut connection = self.connection.clone();
        self.bounded(connection.set::<_, _, ()>(self.key(product), body)).await
    }

    async fn load(&self, product: ProductId) -> Result<Option<StockSnapshot>, SnapshotError> {
        let mut connection = self.connection.clone();
        let body: Option<String> = self.bounded(connection.get(self.key(product))).await?;
        body.as_deref().map(decode).transpose()
    }

    async fn ping(&self) -> Result<(), SnapshotError> {
        let mut connection = self.connection.clone();
        self.bounded(redis::cmd("PING").query_async::<String>(&mut connection)).await.map(drop)
    }
}
