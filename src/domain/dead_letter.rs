//! Jobs that must happen eventually (a buyer's payment, a refund of money that came too late) and the record of one
//! that failed every attempt: a dead letter, kept until an operator replays it.

use serde::{Deserialize, Serialize};

use super::{DeadLetterId, ParseError, PaymentOrder, Timestamp};

/// Which job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Payment,
    Refund,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Payment => "payment",
            JobKind::Refund => "refund",
        }
    }

    pub fn parse(text: &str) -> Result<Self, ParseError> {
        match text {
            "payment" => Ok(JobKind::Payment),
            "refund" => Ok(JobKind::Refund),
            _ => Err(ParseError::new("kind", "must be payment or refund")),
        }
    }
}

/// One attempt of a job and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub number: u32,
    pub started_at: Timestamp,
    /// `None` while it runs, or if it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The wait before the next attempt, if one followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// A job that gave up, as it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    pub kind: JobKind,
    pub payment: PaymentOrder,
    pub reason: String,
    pub attempts: Vec<Attempt>,
}

/// A dead letter as an operator reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub id: DeadLetterId,
    pub kind: JobKind,
    #[serde(flatten)]
    pub payment: PaymentOrder,
    pub reason: String,
    pub attempts: Vec<Attempt>,
    pub created_at: Timestamp,
    /// When an operator replayed it; `None` while it waits.
    pub reprocessed_at: Option<Timestamp>,
}

/// Which dead letters a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LetterStatus {
    Pending,
    Reprocessed,
}

/// A page of dead letters: those after `after` (by id), of `kind` and `status` if given, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LetterFilter {
    pub kind: Option<JobKind>,
    pub status: Option<LetterStatus>,
    pub after: Option<DeadLetterId>,
    pub limit: u32,
}
