//! Where a job that gave up goes: a dead letter in the database (retried until the database takes it), mirrored
//! to the journal's dead-letter topic when the journal is Kafka, and announced to an operator's alert webhook if
//! one is configured. Nothing here runs inside an actor's handler: the supervisor hands the letter over and goes on.

use std::sync::Arc;
use std::time::Duration;

use crate::actors::supervision::BackoffPolicy;
use crate::domain::{DeadLetter, NewDeadLetter};
use crate::metrics::LifecycleMetrics;
use crate::persistence::{Database, DeadLetterTopic};

/// Tries of writing one letter before it is only logged.
const WRITES: u32 = 8;

#[derive(Clone)]
pub struct DeadLetterOffice {
    db: Database,
    topic: Option<Arc<dyn DeadLetterTopic>>,
    alert: Option<(reqwest::Client, String)>,
    retry: BackoffPolicy,
    metrics: LifecycleMetrics,
}

impl DeadLetterOffice {
    pub fn new(
        db: Database,
        topic: Option<Arc<dyn DeadLetterTopic>>,
        alert_webhook: Option<String>,
        retry: BackoffPolicy,
        metrics: LifecycleMetrics,
    ) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self { db, topic, alert: alert_webhook.map(|url| (client, url)), retry, metrics }
    }

    /// Writes `letter`, then mirrors and announces it.
    pub async fn post(&self, letter: NewDeadLetter) -> Option<DeadLetter> {
        let mut tries = 0;
        let written = loop {
            match self.db.insert_dead_letter(letter.clone()).await {
                Ok(written) => break written,
                Err(err) if tries + 1 < WRITES => {
                    tracing::warn!(error = %err, order = %letter.payment.order_id, "dead letter not written yet");
                    tokio::time::sleep(self.retry.delay(tries)).await;
                    tries += 1;
                }
                Err(err) => {
                    tracing::error!(error = %err, letter = ?letter, "dead letter could not be written");
                    return None;
                }
            }
        };
        self.metrics.archived();
        tracing::warn!(id = %written.id, kind = written.kind.as_str(), order = %written.payment.order_id,
            reason = %written.reason, "dead letter written");
        if let Some(topic) = &self.topic {
            if let Err(err) = topic.publish(&written).await {
                tracing::warn!(error = %err, id = %written.id, "dead letter not mirrored to its topic");
            }
        }
        if let Some((client, url)) = &self.alert {
            match client.post(url).json(&written).send().await {
                Ok(answer) if answer.status().is_success() => {}
                Ok(answer) => tracing::warn!(status = %answer.status(), "the dead-letter alert webhook refused"),
                Err(err) => tracing::warn!(error = %err, "the dead-letter alert webhook is unreachable"),
            }
        }
        Some(written)
    }
}
