//! The order projector's side of Kafka: a consumer-group member that writes a polled batch into `orders` and only
//! then commits the batch's offsets, and a reader of the group's committed offsets for the lag.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{blocking, consumer_config, decode};
use crate::domain::Recorded;
use crate::persistence::db::lock;
use crate::persistence::journal::{JournalError, JournalProjection, KafkaConfig, OrderSpans, Projected};
use crate::persistence::Database;

pub struct GroupProjection {
    config: KafkaConfig,
    partitions: i32,
    /// The group member; dropped after a failed step so the next one resumes from committed offsets.
    member: Mutex<Option<Arc<BaseConsumer>>>,
    /// Reads the group's committed offsets and the partitions' ends, without joining the group.
    offsets: Arc<Mutex<BaseConsumer>>,
}

impl GroupProjection {
    pub fn new(config: KafkaConfig, partitions: i32) -> Result<Self, JournalError> {
        Ok(Self {
            offsets: Arc::new(Mutex::new(consumer_config(&config).create()?)),
            member: Mutex::new(None),
            partitions,
            config,
        })
    }

    fn member(&self) -> Result<Arc<BaseConsumer>, JournalError> {
        let mut slot = lock(&self.member);
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

    fn leave(&self) {
        let member = lock(&self.member).take();
        // Leaving the group waits for the broker: not on an async worker.
        tokio::task::spawn_blocking(move || drop(member));
    }
}

#[async_trait]
impl JournalProjection for GroupProjection {
    async fn project_next(
        &self,
        orders: &Database,
        limit: usize,
        spans: Option<&dyn OrderSpans>,
    ) -> Result<Projected, JournalError> {
        let step = async {
            let member = self.member()?;
            let (events, offsets) = blocking({
                let (member, topic) = (Arc::clone(&member), self.config.topic.clone());
                move || poll_batch(&member, &topic, limit)
            })
            .await?;
            let read = events.len();
            let written = orders.project_orders(events, None, spans).await?;
            if offsets.count() > 0 {
                blocking(move || Ok(member.commit(&offsets, CommitMode::Sync)?)).await?;
            }
            Ok(Projected { events: read, orders: written })
        };
        let outcome = step.await;
        if outcome.is_err() {
            self.leave();
        }
        outcome
    }

    async fn projection_lag(&self, _orders: &Database) -> Result<u64, JournalError> {
        let reader = Arc::clone(&self.offsets);
        let (topic, partitions, timeout) = (self.config.topic.clone(), self.partitions, self.config.request_timeout);
        blocking(move || lag(&lock(&reader), &topic, partitions, timeout)).await
    }
}

/// Events of `topic` that the group has not committed yet, over every partition.
fn lag(reader: &BaseConsumer, topic: &str, partitions: i32, timeout: Duration) -> Result<u64, JournalError> {
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = reader.committed_offsets(wanted, timeout)?;
    let mut lag = 0;
    for partition in 0..partitions {
        let (low, high) = reader.fetch_watermarks(topic, partition, timeout)?;
        let done = match committed.find_partition(topic, partition).map(|elem| elem.offset()) {
            Some(Offset::Offset(offset)) => offset,
            _ => low,
        };
        lag += u64::try_from(high - done.max(low)).unwrap_or(0);
    }
    Ok(lag)
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
