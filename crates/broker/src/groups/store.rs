//! Durability of group state in the internal topic `__consumer_offsets`: creating the topic,
//! appending the coordinator's records to the leader of a group's partition ([`OffsetsTopic`],
//! the broker's [`OffsetsLog`]), waiting until the in-sync replicas have them (Kafka appends
//! with `acks=-1`), and reading one partition back when this broker becomes its leader so the
//! coordinator can rebuild the partition's groups ([`read_partition`]).

use bytes::Bytes;
use strom_metadata::{MetadataError, MetadataImage};
use strom_protocol::records::{
    decode_records, split_batches, BatchBuilder, Compression, DEFAULT_MAX_DECOMPRESSED_BYTES,
};
use strom_protocol::ErrorCode;

use crate::partitions::PartitionError;
use crate::purgatory::await_high_watermark;
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
        source: PartitionError,
    },
    #[error("reading {OFFSETS_TOPIC}-{partition}: {source}")]
    Read {
        partition: i32,
        source: PartitionError,
    },
    /// Appended, but the in-sync replicas did not all get the records (in time, or at all: the
    /// leadership moved).
    #[error("records appended to {OFFSETS_TOPIC}-{partition} not committed: {source}")]
    NotCommitted {
        partition: i32,
        source: PartitionError,
    },
}

impl OffsetsLogError {
    /// What a group request answers when its records could not be stored (Kafka's mapping of
    /// append errors: `CoordinatorOperationExceptionHelper`,
    /// `appendGroupMetadataErrorToResponseError`): a partition that is not led here (any more)
    /// or whose storage failed means another broker must coordinate (NOT_COORDINATOR); too few
    /// replicas or a replication timeout is a passing state (COORDINATOR_NOT_AVAILABLE, which
    /// clients retry); an oversized append is UNKNOWN_SERVER_ERROR.
    pub fn coordinator_error(&self) -> ErrorCode {
        let source = match self {
            OffsetsLogError::MissingPartition(_) => return ErrorCode::NotCoordinator,
            OffsetsLogError::Append { source, .. }
            | OffsetsLogError::Read { source, .. }
            | OffsetsLogError::NotCommitted { source, .. } => source,
        };
        match ErrorCode::from_code(source.error_code()) {
            Some(
                ErrorCode::UnknownTopicOrPartition
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::NotEnoughReplicasAfterAppend
                | ErrorCode::RequestTimedOut,
            ) => ErrorCode::CoordinatorNotAvailable,
            Some(ErrorCode::NotLeaderOrFollower | ErrorCode::KafkaStorageError) => {
                ErrorCode::NotCoordinator
            }
            Some(
                ErrorCode::MessageTooLarge
                | ErrorCode::RecordListTooLarge
                | ErrorCode::InvalidFetchSize,
            ) => ErrorCode::UnknownServerError,
            Some(other) => other,
            None => ErrorCode::UnknownServerError,
        }
    }
}

/// Where the coordinator writes its records: one partition of the offsets topic per group.
pub trait OffsetsLog {
    /// Appends key/value records (a `None` value is a tombstone) to `partition` as its leader,
    /// durably enough to survive a process crash once this returns. Returns the offset after the
    /// last record: once the partition's high watermark reaches it, the records are committed.
    fn append(
        &self,
        partition: i32,
        records: &[(Bytes, Option<Bytes>)],
        now_ms: i64,
    ) -> Result<i64, OffsetsLogError>;

    /// Blocks until `partition`'s high watermark reaches `end_offset` (every in-sync replica has
    /// the records before it), for at most `offsets.commit.timeout.ms`.
    fn await_committed(&self, partition: i32, end_offset: i64) -> Result<(), OffsetsLogError>;
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
    ) -> Result<i64, OffsetsLogError> {
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
        // The owner refuses unless this broker leads the partition. Callers are on the blocking
        // pool.
        let appended = hosted
            .append_as_leader(&builder.build(), now_ms)
            .map_err(|failure| OffsetsLogError::Append {
                partition,
                source: failure.error,
            })?;
        Ok(appended.last_offset + 1)
    }

    fn await_committed(&self, partition: i32, end_offset: i64) -> Result<(), OffsetsLogError> {
        let hosted = self
            .broker
            .partitions
            .get(OFFSETS_TOPIC, partition)
            .ok_or(OffsetsLogError::MissingPartition(partition))?;
        let timeout = std::time::Duration::from_millis(
            u64::try_from(self.broker.config.offsets_commit_timeout_ms).unwrap_or(0),
        );
        // Coordinator calls run on the blocking pool (never on a worker), where blocking on the
        // runtime's handle is allowed; the owner's high watermark watch wakes the wait. On one
        // node the append itself moved the high watermark and this returns at once.
        let committed = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime.block_on(await_high_watermark(
                &hosted,
                end_offset,
                tokio::time::Instant::now() + timeout,
            )),
            Err(_) if hosted.subscribe().borrow().high_watermark >= end_offset => Ok(()),
            Err(_) => Err(PartitionError::ReplicationTimedOut(hosted.name())),
        };
        committed.map_err(|source| OffsetsLogError::NotCommitted { partition, source })
    }
}

/// The replication factor `__consumer_offsets` gets: `offsets.topic.replication.factor`, capped
/// by the number of brokers that can take replicas now (unfenced, not shutting down), at least 1.
fn offsets_topic_replication_factor(broker: &Broker, image: &MetadataImage) -> i16 {
    let available = image
        .brokers
        .values()
        .filter(|b| !b.fenced && !b.in_controlled_shutdown)
        .count();
    let available = i16::try_from(available).unwrap_or(i16::MAX).max(1);
    broker
        .config
        .offsets_topic_replication_factor
        .min(available)
}

/// Creates `__consumer_offsets` (compacted, `offsets.topic.*` settings; the replication factor
/// capped by the available brokers) if it does not exist, and waits until this broker has
/// applied it.
pub async fn ensure_offsets_topic(broker: &Broker) -> Result<(), MetadataError> {
    let image = broker.image();
    if image.topic(OFFSETS_TOPIC).is_none() {
        let configs = vec![
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                broker.config.offsets_topic_segment_bytes.to_string(),
            ),
        ];
        let replication_factor = offsets_topic_replication_factor(broker, &image);
        let created = broker
            .controller
            .create_topic(
                OFFSETS_TOPIC,
                broker.config.offsets_topic_num_partitions,
                replication_factor,
                &configs,
                false,
            )
            .await;
        match created {
            Ok(_) => tracing::info!(
                topic = OFFSETS_TOPIC,
                replication_factor,
                "created internal topic"
            ),
            Err(error) if error.code == ErrorCode::TopicAlreadyExists.code() => {}
            Err(error) => return Err(error),
        }
    }
    broker.catch_up_with_controller().await;
    Ok(())
}

/// Replays every record of offsets partition `index` led here, in log order, up to its log end
/// (Kafka's coordinator loads everything the leader has). Unreadable batches are logged and
/// skipped; an error means the partition could not be read (no longer led here, or offline).
pub fn read_partition(
    broker: &Broker,
    index: i32,
    mut replay: impl FnMut(Bytes, Option<Bytes>),
) -> Result<(), OffsetsLogError> {
    let partition = broker
        .partitions
        .get(OFFSETS_TOPIC, index)
        .ok_or(OffsetsLogError::MissingPartition(index))?;
    let failed = |source| OffsetsLogError::Read {
        partition: index,
        source,
    };
    let offsets = partition.offsets().map_err(failed)?;
    let (mut offset, end) = (offsets.log_start_offset, offsets.log_end_offset);
    while offset < end {
        let chunk = partition
            .read_to_log_end(offset, LOAD_CHUNK_BYTES, true)
            .map_err(failed)?
            .records;
        if chunk.is_empty() {
            break;
        }
        let batches = match split_batches(&chunk) {
            Ok(batches) => batches,
            Err(error) => {
                tracing::error!(partition = index, offset, %error, "corrupt batch in {OFFSETS_TOPIC}; the rest of the partition is skipped");
                break;
            }
        };
        for (header, batch) in batches {
            offset = header.last_offset() + 1;
            if header.is_control() {
                continue;
            }
            match decode_records(&batch, DEFAULT_MAX_DECOMPRESSED_BYTES) {
                Ok(decoded) => {
                    for record in decoded {
                        if let Some(key) = record.key {
                            replay(key, record.value);
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(partition = index, offset, %error, "undecodable batch in {OFFSETS_TOPIC}");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;

    /// Kafka's default factor of 3 on a single node: capped by the one broker, the offsets topic
    /// is created at start with one replica per partition.
    #[tokio::test]
    async fn a_single_node_creates_the_offsets_topic_with_the_factor_capped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = BrokerConfig {
            log_dirs: vec![dir.path().to_path_buf()],
            ..BrokerConfig::default()
        };
        assert_eq!(config.offsets_topic_replication_factor, 3);
        let (_shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let advertised = vec![crate::server::plaintext_endpoint(
            "PLAINTEXT",
            "localhost",
            9092,
        )];
        let broker = crate::server::open_broker(config, advertised, shutdown_rx)
            .await
            .expect("open broker");
        let image = broker.image();
        let topic = image.topic(OFFSETS_TOPIC).expect("created at start");
        assert_eq!(topic.partitions.len(), 50);
        assert!(topic
            .partitions
            .values()
            .all(|p| p.replicas == vec![broker.node_id] && p.leader == broker.node_id));
    }
}
