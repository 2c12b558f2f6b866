//! Errors of metadata operations, carrying the Kafka error code a request handler sends back.

use strom_protocol::ErrorCode;

/// A failed metadata operation: the Kafka error code to return and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (Kafka error code {code})")]
pub struct MetadataError {
    pub code: i16,
    pub message: String,
}

impl MetadataError {
    pub fn new(code: i16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// An error of the generated [`ErrorCode`] enum with a message.
    pub fn of(error: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(error.code(), message)
    }

    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::of(ErrorCode::InvalidConfig, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::of(ErrorCode::InvalidRequest, message)
    }

    pub fn unknown_topic(name: &str) -> Self {
        Self::of(
            ErrorCode::UnknownTopicOrPartition,
            format!("Topic {name} does not exist."),
        )
    }

    /// The metadata log or its directory could not be read or written.
    pub fn storage(context: &str, err: impl std::fmt::Display) -> Self {
        Self::of(ErrorCode::KafkaStorageError, format!("{context}: {err}"))
    }
}
