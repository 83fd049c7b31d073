//! The journal on Kafka, for production. Each product's events go to one partition (chosen from the product id,
//! which is also the record key), so a product's history is ordered and a recovery reads one partition from the
//! snapshot's position, keeping the records with its key. A position is the record's offset + 1, so position 0
//! still means "before everything".
//!
//! The journal's three roles are three clients of their own: an idempotent producer session with `acks=all` that
//! answers an append only once the broker acknowledged every record of the batch (`producer`); a reader that never
//! joins a group, for recoveries (`reader`); and a consumer-group member that commits offsets only after the rows
//! are committed in the database, at-least-once onto idempotent writes (`projection`). No Kafka transactions are
//! used. librdkafka's calls that wait (metadata, offsets, polling) run on blocking threads.

mod dead_letters;
mod producer;
mod projection;
mod reader;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::Message;

use self::dead_letters::DeadLetterStream;
use self::producer::ProducerSession;
use self::projection::GroupProjection;
use self::reader::RecoveryReader;
use super::journal::{Journal, JournalError, KafkaConfig};
use crate::domain::{JournalEvent, Position, ProductId, Recorded};

impl From<KafkaError> for JournalError {
    fn from(err: KafkaError) -> Self {
        JournalError::Unavailable(format!("kafka: {err}"))
    }
}

/// Connects the journal's three roles: creates the topic if it does not exist and learns its partition count. A broker
/// that does not answer yet (one started beside the service, still opening its storage) is asked again, with growing
/// pauses, for `connect_wait`.
pub async fn connect(config: KafkaConfig) -> Result<Journal, JournalError> {
    let deadline = tokio::time::Instant::now() + config.connect_wait;
    let mut pause = Duration::from_millis(100);
    loop {
        match try_connect(&config).await {
            Err(JournalError::Unavailable(reason)) if tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(%reason, retry_in_ms = pause.as_millis() as u64, "the journal's broker does not answer yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            connected => return connected,
        }
    }
}

async fn try_connect(config: &KafkaConfig) -> Result<Journal, JournalError> {
    ensure_topic(config).await?;
    let probe: BaseConsumer = consumer_config(config).create()?;
    let partitions = blocking({
        let (topic, timeout) = (config.topic.clone(), config.request_timeout);
        move || partition_count(&probe, &topic, timeout)
    })
    .await?;
    if partitions != config.partitions {
        tracing::warn!(topic = %config.topic, partitions, configured = config.partitions,
            "the journal topic exists with another partition count; using the topic's");
    }
    Ok(Journal {
        append: std::sync::Arc::new(ProducerSession::new(config.clone(), partitions)?),
        replay: std::sync::Arc::new(RecoveryReader::new(config.clone(), partitions)?),
        projection: std::sync::Arc::new(GroupProjection::new(config.clone(), partitions)?),
        dead_letters: Some(std::sync::Arc::new(DeadLetterStream::connect(config).await?)),
    })
}

/// The partition that holds `product`'s events.
pub fn partition_of(product: ProductId, partitions: i32) -> i32 {
    let partitions = i64::from(partitions.max(1));
    i32::try_from(product.get().rem_euclid(partitions)).unwrap_or(0)
}

fn base_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", "seckill")
        .set("socket.timeout.ms", config.request_timeout.as_millis().to_string());
    client
}

fn consumer_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = base_config(config);
    client
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    client
}

async fn ensure_topic(config: &KafkaConfig) -> Result<(), JournalError> {
    let admin: AdminClient<DefaultClientContext> = base_config(config).create()?;
    let topic = NewTopic::new(&config.topic, config.partitions, TopicReplication::Fixed(config.replication));
    let options = AdminOptions::new().request_timeout(Some(config.request_timeout));
    for result in admin.create_topics([&topic], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(JournalError::Unavailable(format!("kafka: cannot create topic {name}: {code}")));
            }
        }
    }
    Ok(())
}

/// The topic's partition count, once its metadata shows it (a new topic can take a moment).
fn partition_count(client: &BaseConsumer, topic: &str, timeout: Duration) -> Result<i32, JournalError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let metadata = client.fetch_metadata(Some(topic), timeout)?;
        let count = metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
        if count > 0 {
            return i32::try_from(count).map_err(|_| JournalError::Unavailable("kafka: absurd partition count".into()));
        }
        if std::time::Instant::now() >= deadline {
            return Err(JournalError::Unavailable(format!("kafka: topic {topic} has no partitions")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn decode(message: &impl Message) -> Result<Recorded, JournalError> {
    let position = Position::new(message.offset() + 1);
    let corrupt = |reason: String| JournalError::Corrupt { position, reason };
    let payload = message.payload().ok_or_else(|| corrupt("empty record".into()))?;
    let text = std::str::from_utf8(payload).map_err(|err| corrupt(err.to_string()))?;
    let event = JournalEvent::from_json(text).map_err(|err| corrupt(err.to_string()))?;
    Ok(Recorded { position, event })
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, JournalError> + Send + 'static,
) -> Result<T, JournalError> {
    tokio::task::spawn_blocking(work).await.map_err(|err| JournalError::Unavailable(format!("kafka worker: {err}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_always_lands_on_the_same_partition_and_all_partitions_are_used() {
        let product = |id: i64| ProductId::try_from(id).unwrap();
        assert_eq!(partition_of(product(7), 4), partition_of(product(7), 4));
        let used: std::collections::BTreeSet<i32> = (1..=8).map(|id| partition_of(product(id), 4)).collect();
        assert_eq!(used, (0..4).collect());
        assert_eq!(partition_of(product(5), 1), 0);
    }
}
