//! Errors of the storage engine, each mapped to the Kafka error code a broker answers with.

use std::io;

use strom_protocol::ErrorCode;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file-system operation failed; the partition's storage is suspect.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A batch failed validation (length, magic, CRC-32C).
    #[error("corrupt record batch: {0}")]
    CorruptRecords(String),
    /// A batch is well formed but breaks a record rule (empty append, record count mismatch...).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// One batch is larger than `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: usize },
    /// The whole append is larger than a segment can hold (`segment.bytes`).
    #[error("append of {size} bytes exceeds segment.bytes {max}")]
    RecordListTooLarge { size: usize, max: u64 },
    /// An idempotent producer skipped or reordered sequence numbers.
    #[error(
        "out of order sequence for producer {producer_id} epoch {epoch}: got {received}, expected {expected}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        expected: i32,
        received: i32,
    },
    /// An idempotent producer wrote with an epoch older than the one already seen.
    #[error("producer {producer_id} epoch {received} is older than current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        received: i16,
    },
    /// A CreateTime record's timestamp lies too far from the broker's clock
    /// (`message.timestamp.before.max.ms` / `message.timestamp.after.max.ms`). The message is
    /// Kafka's per-record one; `offset` is the record's offset as the producer sent it (before the
    /// log assigned offsets, as in Kafka) and `batch_index` its index within its batch (Kafka's
    /// `RecordError.batch_index`).
    #[error(
        "Timestamp {timestamp} of message with offset {offset} is out of range. The timestamp should be within [{lower}, {upper}]"
    )]
    InvalidTimestamp {
        timestamp: i64,
        offset: i64,
        batch_index: usize,
        lower: i64,
        upper: i64,
    },
    /// Records without key sent to a compacted topic: their indexes within the (first offending)
    /// batch, Kafka's `RecordError.batch_index`, one per record.
    #[error("compacted topic cannot accept {} record(s) without key", batch_indexes.len())]
    RecordsWithoutKey { batch_indexes: Vec<usize> },
    /// The requested offset lies outside `[start, end]` (the log start and the log end, or the
    /// high watermark where the operation is bounded by it).
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    /// A follower append starting below the log end offset (Kafka's
    /// `UnexpectedAppendOffsetException`): the follower must truncate first.
    #[error("follower append starts at offset {first_offset}, below the log end offset {log_end_offset}")]
    UnexpectedAppendOffset {
        first_offset: i64,
        log_end_offset: i64,
    },
    /// A follower append whose batches do not have increasing offsets (Kafka's
    /// `OffsetsOutOfOrderException`).
    #[error(
        "follower append has a batch at offset {base_offset} after offset {previous_last_offset}"
    )]
    OffsetsOutOfOrder {
        previous_last_offset: i64,
        base_offset: i64,
    },
}

impl StorageError {
    /// Builds an [`StorageError::Io`] with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The Kafka error for this failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            Self::CorruptRecords(_) => ErrorCode::CorruptMessage,
            Self::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
            Self::InvalidTimestamp { .. } => ErrorCode::InvalidTimestamp,
            Self::RecordListTooLarge { .. } => ErrorCode::RecordListTooLarge,
            Self::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequenceNumber,
            Self::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            Self::Io { .. } => ErrorCode::KafkaStorageError,
            Self::InvalidRecord(_) | Self::RecordsWithoutKey { .. } => ErrorCode::InvalidRecord,
            // Raised to a follower's own fetcher, never sent to a client.
            Self::UnexpectedAppendOffset { .. } | Self::OffsetsOutOfOrder { .. } => {
                ErrorCode::UnknownServerError
            }
        }
    }

    /// The wire code of [`Self::error_code`], as a response field takes it.
    pub fn kafka_error_code(&self) -> i16 {
        self.error_code().code()
    }
}

/// Shorthand used across the crate.
pub type StorageResult<T> = Result<T, StorageError>;

/// Adds context to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> StorageResult<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> StorageResult<T> {
        self.map_err(|source| StorageError::io(what(), source))
    }
}
