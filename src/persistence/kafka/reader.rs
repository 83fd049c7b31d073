//! A recovering product's side of Kafka: a consumer that never joins the group, assigned to the product's partition
//! from the snapshot's position to the partition's end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{blocking, consumer_config, decode, partition_of};
use crate::domain::{Position, ProductId, Recorded};
use crate::persistence::db::lock;
use crate::persistence::journal::{JournalError, JournalReplay, KafkaConfig};

pub struct RecoveryReader {
    topic: String,
    partitions: i32,
    timeout: Duration,
    /// One recovery reads at a time: the consumer is assigned to one partition per read.
    reader: Arc<Mutex<BaseConsumer>>,
}

impl RecoveryReader {
    pub fn new(config: KafkaConfig, partitions: i32) -> Result<Self, JournalError> {
        Ok(Self {
            reader: Arc::new(Mutex::new(consumer_config(&config).create()?)),
            topic: config.topic,
            partitions,
            timeout: config.request_timeout,
        })
    }
}

#[async_trait]
impl JournalReplay for RecoveryReader {
    async fn read_product(
        &self,
        product: ProductId,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Recorded>, JournalError> {
        let reader = Arc::clone(&self.reader);
        let (topic, partition, timeout) = (self.topic.clone(), partition_of(product, self.partitions), self.timeout);
        blocking(move || {
            let reader = lock(&reader);
            let read = read_partition(&reader, &topic, partition, product, after, limit, timeout);
            let _ = reader.unassign();
            read
        })
        .await
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
