//! Errors of metadata operations, carrying the Kafka error code a request handler sends back.

/// Kafka error codes this crate returns (see Kafka's `Errors` enum).
pub mod codes {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_CONFIG: i16 = 40;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_REQUEST: i16 = 42;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
}

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

    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_CONFIG, message)
    }

    pub fn unknown_topic(name: &str) -> Self {
        Self::new(
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            format!("Topic {name} does not exist."),
        )
    }

    /// The metadata log or its directory could not be read or written.
    pub fn storage(context: &str, err: impl std::fmt::Display) -> Self {
        Self::new(codes::KAFKA_STORAGE_ERROR, format!("{context}: {err}"))
    }
}
