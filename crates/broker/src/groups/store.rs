//! Durability of group state in the internal topic `__consumer_offsets`: creating the topic at
//! broker start, appending the coordinator's records to it ([`OffsetsTopic`], the broker's
//! [`OffsetsLog`]) before a commit is acknowledged, and reading every partition back at start so
//! the coordinator can rebuild its groups.

use bytes::Bytes;
use strom_metadata::MetadataError;
use strom_protocol::records::{
    decode_records, split_batches, BatchBuilder, Compression, DEFAULT_MAX_DECOMPRESSED_BYTES,
};
use strom_protocol::ErrorCode;

use crate::state::Broker;

/// The internal topic that holds committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How much of a partition is read at a time while loading.
const LOAD_CHUNK_BYTES: usize = 1 << 20;

/// Why records could not be written to (or read from) the offsets topic.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsLogError {
    #[error("partition {0} of {OFFSETS_TOPIC} is not hosted here")]
    MissingPartition(i32),
    #[error("appending to {OFFSETS_TOPIC}-{partition}: {source}")]
    Append {
        partition: i32,
        source: crate::partitions::PartitionError,
    },
}

/// Where the coordinator writes its records: one partition of the offsets topic per group.
pub trait OffsetsLog {
    /// Appends key/value records (a `None` value is a tombstone) to `partition`, durably enough
    /// to survive a process crash once this returns.
    fn append(
        &self,
        partition: i32,
        records: &[(Bytes, Option<Bytes>)],
        now_ms: i64,
    ) -> Result<(), OffsetsLogError>;
}

/// The broker's offsets topic as an [`OffsetsLog`].
pub struct OffsetsTopic<'a> {
    broker: &'a Broker,
}

impl<'a> OffsetsTopic<'a> {
    pub fn new(broker: &'a Broker) -> Self {
        OffsetsTopic { broker }
    }
}

impl OffsetsLog for OffsetsTopic<'_> {
    fn append(
        &self,
        partition: i32,
        records: &[(Bytes, Option<Bytes>)],
        now_ms: i64,
    ) -> Result<(), OffsetsLogError> {
        let hosted = self
            .broker
            .partitions
            .get(OFFSETS_TOPIC, partition)
            .ok_or(OffsetsLogError::MissingPartition(partition))?;
        let mut builder = BatchBuilder::new(0, Compression::None, now_ms);
        for (key, value) in records {
            builder.push(now_ms, Some(key.clone()), value.clone(), Vec::new());
        }
        // The log writes with pwrite: once append returns, a SIGKILL cannot lose the records.
        // The owner advances the high watermark (this broker is the only in-sync replica) and
        // wakes fetches waiting on this partition. Callers are on the blocking pool.
        hosted
            .append_as_leader(&builder.build(), now_ms)
            .map_err(|failure| OffsetsLogError::Append {
                partition,
                source: failure.error,
            })?;
        Ok(())
    }
}

/// Creates `__consumer_offsets` (compacted, `offsets.topic.*` settings) if it does not exist, and
/// waits until this broker has applied it.
pub async fn ensure_offsets_topic(broker: &Broker) -> Result<(), MetadataError> {
    if broker.image().topic(OFFSETS_TOPIC).is_none() {
        let configs = vec![
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                broker.config.offsets_topic_segment_bytes.to_string(),
            ),
        ];
        let created = broker
            .controller
            .create_topic(
                OFFSETS_TOPIC,
                broker.config.offsets_topic_num_partitions,
                broker.config.offsets_topic_replication_factor,
                &configs,
                false,
            )
            .await;
        match created {
            Ok(_) => tracing::info!(topic = OFFSETS_TOPIC, "created internal topic"),
            Err(error) if error.code == ErrorCode::TopicAlreadyExists.code() => {}
            Err(error) => return Err(error),
        }
    }
    broker.catch_up_with_controller().await;
    Ok(())
}

/// Every record of every hosted offsets partition, in log order per partition. Unreadable
/// batches are logged and the rest of their partition skipped.
pub fn read_offsets_topic(broker: &Broker) -> Vec<(Bytes, Option<Bytes>)> {
    let mut records = Vec::new();
    let count = broker
        .image()
        .topic(OFFSETS_TOPIC)
        .map_or(0, |t| t.partitions.len());
    for index in 0..count {
        let Ok(index) = i32::try_from(index) else {
            break;
        };
        let Some(partition) = broker.partitions.get(OFFSETS_TOPIC, index) else {
            continue;
        };
        // Everything the leader has, up to its log end, as Kafka's coordinator loads.
        let (mut offset, end) = match partition.offsets() {
            Ok(offsets) => (offsets.log_start_offset, offsets.log_end_offset),
            Err(error) => {
                tracing::error!(partition = index, %error, "cannot read {OFFSETS_TOPIC}");
                continue;
            }
        };
        while offset < end {
            let chunk = match partition.read_to_log_end(offset, LOAD_CHUNK_BYTES, true) {
                Ok(read) if !read.records.is_empty() => read.records,
                Ok(_) => break,
                Err(error) => {
                    tracing::error!(partition = index, offset, %error, "cannot read {OFFSETS_TOPIC}");
                    break;
                }
            };
            let batches = match split_batches(&chunk) {
                Ok(batches) => batches,
                Err(error) => {
                    tracing::error!(partition = index, offset, %error, "corrupt batch in {OFFSETS_TOPIC}");
                    break;
                }
            };
            for (header, batch) in batches {
                offset = header.last_offset() + 1;
                if header.is_control() {
                    continue;
                }
                match decode_records(&batch, DEFAULT_MAX_DECOMPRESSED_BYTES) {
                    Ok(decoded) => records.extend(
                        decoded
                            .into_iter()
                            .filter_map(|record| Some((record.key?, record.value))),
                    ),
                    Err(error) => {
                        tracing::error!(partition = index, offset, %error, "undecodable batch in {OFFSETS_TOPIC}");
                    }
                }
            }
        }
    }
    records
}
