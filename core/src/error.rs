//! [`KafkaError`]: a Kafka error code with the message a client is shown, the one type every
//! handler and check uses for a refusal that is answered rather than a connection closed.

use crate::codec::ErrorCode;

/// A refusal as Kafka answers it: an error code and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaError {
    /// The error code.
    pub code: ErrorCode,
    /// What was wrong, for the client's error message field.
    pub message: String,
}

impl KafkaError {
    /// A refusal with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl core::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}
