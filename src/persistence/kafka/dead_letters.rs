//! Dead letters on `<journal topic>-dlq`: a copy of each, keyed by its order, for the consumers of a production
//! deployment (an alerting pipeline, a support tool). One partition keeps them in the order they were written.

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{base_config, ensure_topic};
use crate::domain::DeadLetter;
use crate::persistence::journal::{JournalError, KafkaConfig};
use crate::persistence::DeadLetterTopic;

pub struct DeadLetterStream {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl DeadLetterStream {
    /// Creates the topic if it does not exist.
    pub async fn connect(journal: &KafkaConfig) -> Result<Self, JournalError> {
        let config = KafkaConfig { topic: format!("{}-dlq", journal.topic), partitions: 1, ..journal.clone() };
        ensure_topic(&config).await?;
        let producer = base_config(&config)
            .set("acks", "all")
            .set("message.timeout.ms", config.delivery_timeout.as_millis().to_string())
            .create()?;
        Ok(Self { producer, topic: config.topic, timeout: config.delivery_timeout })
    }
}

#[async_trait]
impl DeadLetterTopic for DeadLetterStream {
    async fn publish(&self, letter: &DeadLetter) -> Result<(), JournalError> {
        let payload =
            serde_json::to_string(letter).map_err(|err| JournalError::Unavailable(format!("dead letter: {err}")))?;
        let key = letter.payment.order_id.to_string();
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
        self.producer.send(record, self.timeout).await.map(|_| ()).map_err(|(err, _)| err.into())
    }
}
