//! The journal writer's side of Kafka: an idempotent producer session with `acks=all`. An append answers only once
//! the broker acknowledged (or refused) every record of its batch.

use std::sync::Mutex;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::base_config;
use crate::domain::{JournalEvent, Position};
use crate::persistence::db::lock;
use crate::persistence::journal::{JournalAppend, JournalError, KafkaConfig};

pub struct ProducerSession {
    config: KafkaConfig,
    partitions: i32,
    /// Replaced after a failed append (see `renew`).
    producer: Mutex<FutureProducer>,
    /// Where `append`, which blocks its caller's thread, waits for the broker's answers.
    runtime: tokio::runtime::Handle,
}

impl ProducerSession {
    pub fn new(config: KafkaConfig, partitions: i32) -> Result<Self, JournalError> {
        Ok(Self {
            producer: Mutex::new(producer(&config)?),
            partitions,
            runtime: tokio::runtime::Handle::current(),
            config,
        })
    }

    /// After a failed append the producer's idempotence session ends and the next append starts a new one. Left
    /// alone, librdkafka would recover the old session by bumping its epoch, which tansu mishandles (its storage
    /// panics on the next produce); a new producer gets a new producer id instead, and this also covers a producer
    /// librdkafka declared fatally broken. Called once every record of the failed batch was answered, so nothing
    /// of the old session is still on its way.
    fn renew(&self, used: FutureProducer) {
        tracing::warn!(fatal = ?used.client().fatal_error(), "kafka append failed; starting a new producer");
        let retired = match producer(&self.config) {
            Ok(fresh) => Some(std::mem::replace(&mut *lock(&self.producer), fresh)),
            Err(err) => {
                tracing::warn!(error = %err, "kafka producer could not be renewed; will try again");
                None
            }
        };
        // Dropping a producer waits for its threads: not on an async worker.
        tokio::task::spawn_blocking(move || drop((retired, used)));
    }

    /// Sends every record of a batch and waits for the broker's answers to all of them.
    async fn produce(&self, events: &[JournalEvent]) -> Result<Vec<Position>, JournalError> {
        let producer = lock(&self.producer).clone();
        let mut deliveries = Vec::with_capacity(events.len());
        let mut refused = None;
        for event in events {
            let product = event.product_id();
            let (key, payload) = (product.get().to_string(), event.to_json());
            let partition = super::partition_of(product, self.partitions);
            let record = FutureRecord::to(&self.config.topic).partition(partition).key(&key).payload(&payload);
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
                self.renew(producer);
                Err(err)
            }
        }
    }
}

impl JournalAppend for ProducerSession {
    fn append(&self, events: &[JournalEvent]) -> Result<Vec<Position>, JournalError> {
        self.runtime.block_on(self.produce(events))
    }
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
