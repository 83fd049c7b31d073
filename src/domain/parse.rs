//! One error type for every rejected input, so the HTTP layer can map all of them to `INVALID_INPUT` with the
//! field and the reason a client needs to fix its request.

use std::fmt;

/// Why a value could not become a domain type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ParseError {
    field: &'static str,
    reason: String,
}

impl ParseError {
    pub fn new(field: &'static str, reason: impl fmt::Display) -> Self {
        Self { field, reason: reason.to_string() }
    }

    pub fn field(&self) -> &'static str {
        self.field
    }
}
