//! The journal on Kafka, for production. Each product's events go to one partition (chosen from the product id,
//! which is also the record key), so a product's history is ordered and a recovery reads one partition from the
//! snapshot's position, keeping the records with its key. A position is the record's offset + 1, so position 0
//! still means "before everything".
//!
//! The producer is idempotent with `acks=all`, and `append` answers only once the broker acknowledged every record
//! of the batch. The order projection is a consumer-group member that commits offsets only after the rows are
//! committed in the database: at-least-once delivery onto idempotent writes. No Kafka transactions are used.
//!
//! librdkafka's calls that wait (metadata, offsets, polling) run on blocking threads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::db::{lock, Database};
use super::journal::{Journal, JournalError, KafkaConfig, Projected};
use crate::domain::{JournalEvent, Position, ProductId, Recorded};

pub struct KafkaJournal {
    config: KafkaConfig,
    partitions: i32,
    /// Replaced when librdkafka declares it unusable (a fatal idempotence error).
    producer: Mutex<FutureProducer>,
    /// Reads partitions for recoveries and the group's committed offsets for the lag; never joins the group.
    reader: Arc<Mutex<BaseConsumer>>,
    /// The projection's group member; dropped after a failed step so the next one resumes from committed offsets.
    projection: Mutex<Option<Arc<BaseConsumer>>>,
    /// Where `append`, which blocks its caller's thread, waits for the broker's answers.
    runtime: tokio::runtime::Handle,
}

impl From<KafkaError> for JournalError {
    fn from(err: KafkaError) -> Self {
        JournalError::Unavailable(format!("kafka: {err}"))
    }
}

impl KafkaJournal {
    /// Connects, creates the topic if it does not exist, and learns its partition count.
    pub async fn connect(config: KafkaConfig) -> Result<Self, JournalError> {
        ensure_topic(&config).await?;
        let reader: BaseConsumer = consumer_config(&config).create()?;
        let (reader, partitions) = blocking({
            let (topic, timeout) = (config.topic.clone(), config.request_timeout);
            move || {
                let partitions = partition_count(&reader, &topic, timeout)?;
                Ok((reader, partitions))
            }
        })
        .await?;
        if partitions != config.partitions {
            tracing::warn!(topic = %config.topic, partitions, configured = config.partitions,
                "the journal topic exists with another partition count; using the topic's");
        }
        Ok(Self {
            producer: Mutex::new(producer(&config)?),
            partitions,
            reader: Arc::new(Mutex::new(reader)),
            projection: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
            config,
        })
    }

    fn partition_of(&self, product: ProductId) -> i32 {
        partition_of(product, self.partitions)
    }

    fn producer(&self) -> FutureProducer {
        lock(&self.producer).clone()
    }

    /// After a failed append the producer's idempotence session ends and the next append starts a new one. Left
    /// alone, librdkafka would recover the old session by bumping its epoch, which tansu mishandles (its storage
    /// panics on the next produce); a new producer gets a new producer id instead, and this also covers a producer
    /// librdkafka declared fatally broken. Called once every record of the failed batch was answered, so nothing
    /// of the old session is still on its way.
    fn renew_producer(&self, used: FutureProducer) {
        tracing::warn!(fatal = ?used.client().fatal_error(), "kafka append failed; starting a new producer");
        let retired = match self::producer(&self.config) {
            Ok(fresh) => Some(std::mem::replace(&mut *lock(&self.producer), fresh)),
            Err(err) => {
                tracing::warn!(error = %err, "kafka producer could not be renewed; will try again");
                None
            }
        };
        // Dropping a producer waits for its threads: not on an async worker.
        tokio::task::spawn_blocking(move || drop((retired, used)));
    }

    fn group_member(&self) -> Result<Arc<BaseConsumer>, JournalError> {
        let mut slot = lock(&self.projection);
        if let Some(member) = slot.as_ref() {
            return Ok(Arc::clone(member));
        }
        // A member that died without leaving (kill -9) holds its partitions until its session times out; a short
        // session lets the restarted service's member take over quickly.
        let member: BaseConsumer = consumer_config(&self.config)
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .create()?;
        member.subscribe(&[&self.config.topic])?;
        let member = Arc::new(member);
        *slot = Some(Arc::clone(&member));
        Ok(member)
    }

    fn drop_group_member(&self) {
        let member = lock(&self.projection).take();
        // Leaving the group waits for the broker: not on an async worker.
        tokio::task::spawn_blocking(move || drop(member));
    }

    /// Sends every record of a batch and waits for the broker's answers to all of them.
    async fn produce(&self, events: &[JournalEvent]) -> Result<Vec<Position>, JournalError> {
        let producer = self.producer();
        let mut deliveries = Vec::with_capacity(events.len());
        let mut refused = None;
        for event in events {
            let product = event.product_id();
            let (key, payload) = (product.get().to_string(), event.to_json());
            let record =
                FutureRecord::to(&self.config.topic).partition(self.partition_of(product)).key(&key).payload(&payload);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((err, _)) => {
                    refused = Some(err);
                    break;
                }
            }
        }
        // librdkafka answers every record within the delivery timeout, acknowledged or failed; the longer bound
        // here only guards against a producer that hangs. Waiting for every answer means that, when the writer
        // voids a failed batch, nothing of it is still on its way: the void lands after whatever of it landed.
        let mut positions = Vec::with_capacity(deliveries.len());
        let mut failed = refused.map(JournalError::from);
        let patience = self.config.delivery_timeout * 2;
        match tokio::time::timeout(patience, futures::future::join_all(deliveries)).await {
            Ok(answers) => {
                for answer in answers {
                    match answer {
                        Ok(Ok(delivered)) => positions.push(Position::new(delivered.offset + 1)),
                        Ok(Err((err, _))) => failed = Some(err.into()),
                        Err(_canceled) => failed = Some(JournalError::Unavailable("kafka producer went away".into())),
                    }
                }
            }
            Err(_) => failed = Some(JournalError::Unavailable("kafka: the producer did not answer".into())),
        }
        match failed {
            None => Ok(positions),
            Some(err) => {
                self.renew_producer(producer);
                Err(err)
            }
        }
    }
}

#[async_trait]
impl Journal for KafkaJournal {
    fn append(&self, events: &[JournalEvent]) -> Result<Vec<Position>, JournalError> {
        self.runtime.block_on(self.produce(events))
    }

    async fn read_product(
        &self,
        product: ProductId,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Recorded>, JournalError> {
        let reader = Arc::clone(&self.reader);
        let (topic, partition, timeout) =
            (self.config.topic.clone(), self.partition_of(product), self.config.request_timeout);
        blocking(move || {
            let reader = lock(&reader);
            let read = read_partition(&reader, &topic, partition, product, after, limit, timeout);
            let _ = reader.unassign();
            read
        })
        .await
    }

    async fn project_next(&self, orders: &Database, limit: usize) -> Result<Projected, JournalError> {
        let step = async {
            let member = self.group_member()?;
            let (events, offsets) = blocking({
                let (member, topic) = (Arc::clone(&member), self.config.topic.clone());
                move || poll_batch(&member, &topic, limit)
            })
            .await?;
            let read = events.len();
            let written = orders.project_orders(events, None).await?;
            if offsets.count() > 0 {
                blocking(move || Ok(member.commit(&offsets, CommitMode::Sync)?)).await?;
            }
            Ok(Projected { events: read, orders: written })
        };
        let outcome = step.await;
        if outcome.is_err() {
            self.drop_group_member();
        }
        outcome
    }

    async fn projection_lag(&self, _orders: &Database) -> Result<u64, JournalError> {
        let reader = Arc::clone(&self.reader);
        let (topic, partitions, timeout) = (self.config.topic.clone(), self.partitions, self.config.request_timeout);
        blocking(move || {
            let reader = lock(&reader);
            let mut wanted = TopicPartitionList::new();
            for partition in 0..partitions {
                wanted.add_partition(&topic, partition);
            }
            let committed = reader.committed_offsets(wanted, timeout)?;
            let mut lag = 0;
            for partition in 0..partitions {
                let (low, high) = reader.fetch_watermarks(&topic, partition, timeout)?;
                let done = match committed.find_partition(&topic, partition).map(|elem| elem.offset()) {
                    Some(Offset::Offset(offset)) => offset,
                    _ => low,
                };
                lag += u64::try_from(high - done.max(low)).unwrap_or(0);
            }
            Ok(lag)
        })
        .await
    }
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

fn producer(config: &KafkaConfig) -> Result<FutureProducer, JournalError> {
    Ok(base_config(config)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", config.linger.as_millis().to_string())
        .set("message.timeout.ms", config.delivery_timeout.as_millis().to_string())
        .set("request.timeout.ms", config.delivery_timeout.as_millis().to_string())
        .create()?)
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

/// Up to `limit` of `product`'s events after `after` in its partition, stopping at the partition's end.
fn read_partition(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    product: ProductId,
    after: Position,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<Recorded>, JournalError> {
    let (low, high) = reader.fetch_watermarks(topic, partition, timeout)?;
    let mut next = after.get().max(low);
    if next >= high {
        return Ok(Vec::new());
    }
    let mut start = TopicPartitionList::new();
    start.add_partition_offset(topic, partition, Offset::Offset(next))?;
    reader.assign(&start)?;
    let key = product.get().to_string();
    let mut events = Vec::new();
    while next < high && events.len() < limit {
        let message = match reader.poll(timeout) {
            Some(message) => message?,
            None => {
                return Err(JournalError::Unavailable(format!("kafka: no record at {topic}/{partition}@{next}")));
            }
        };
        next = message.offset() + 1;
        if message.key() == Some(key.as_bytes()) {
            events.push(decode(&message)?);
        }
    }
    Ok(events)
}

/// What one poll of the group member brought: the events, and the offsets to commit once they are projected.
fn poll_batch(
    member: &BaseConsumer,
    topic: &str,
    limit: usize,
) -> Result<(Vec<Recorded>, TopicPartitionList), JournalError> {
    let mut events = Vec::new();
    let mut next_offsets = std::collections::BTreeMap::new();
    let mut wait = Duration::from_millis(100);
    while events.len() < limit {
        let Some(message) = member.poll(wait) else { break };
        let message = message?;
        wait = Duration::ZERO;
        next_offsets.insert(message.partition(), message.offset() + 1);
        events.push(decode(&message)?);
    }
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in next_offsets {
        offsets.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    Ok((events, offsets))
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
