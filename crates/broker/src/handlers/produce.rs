//! Produce (key 0): appends record batches to partition logs.
//!
//! Data path: the request's `records` field arrives as a `Bytes` slice of the network frame. The
//! partitions' appends run off the async worker ([`off_worker`]: an append may wait for the
//! disk — a write under writeback pressure, a segment roll, an fsync under `flush.messages`), so
//! a partition that fsyncs holds up no request for another partition. Each partition's owner validates and writes the batches (see
//! `strom_storage::PartitionLog::append`) with its leader epoch and advances its high watermark.
//! `acks=all` then waits in the purgatory until each partition's high watermark has passed the
//! appended records, or answers REQUEST_TIMED_OUT after the request's `timeout_ms`, as Kafka's
//! delayed produce does; on this single node the only in-sync replica is the leader, so the
//! high watermark has moved by the time the append returns. `acks=all` also honours the topic's
//! effective `min.insync.replicas`, whichever layer sets it: NOT_ENOUGH_REPLICAS when the ISR
//! is smaller. With `acks=0` no response is sent. Internal topics (`__consumer_offsets`) are
//! written by the broker itself: clients get ErrorCode::InvalidTopicException.code(), as from Kafka, unless their
//! client id is Kafka's admin client id. A partition whose storage failed answers
//! KAFKA_STORAGE_ERROR (logged once, at ERROR, by its owner).

use std::sync::Arc;
use std::time::Duration;

use strom_protocol::messages::produce_request::ProduceRequest;
use strom_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use strom_protocol::ErrorCode;
use strom_storage::StorageError;
use tokio::time::Instant;

use super::metadata::is_internal_topic;
use crate::partitions::{off_worker, Partition, PartitionError};
use crate::purgatory;
use crate::state::{now_ms, Broker};

/// The client id allowed to append to internal topics (Kafka's `AdminUtils.ADMIN_CLIENT_ID`).
pub const ADMIN_CLIENT_ID: &str = "__admin_client";

/// An append that `acks=all` waits on: where its answer is in the response, the partition, and
/// the high watermark that commits it.
struct PendingAck {
    topic: usize,
    partition: usize,
    owner: Arc<Partition>,
    committed_at: i64,
    /// The effective `min.insync.replicas`: once committed, an ISR that shrank below it meanwhile
    /// answers NOT_ENOUGH_REPLICAS_AFTER_APPEND, as Kafka's delayed produce does.
    min_insync_replicas: usize,
}

pub async fn handle(
    broker: &Broker,
    request: ProduceRequest,
    _version: i16,
    internal_topics_allowed: bool,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    let (mut responses, pending) =
        off_worker(|| append_all(broker, request, internal_topics_allowed));
    if acks == -1 {
        let deadline = Instant::now() + timeout;
        for ack in pending {
            let response = &mut responses[ack.topic].partition_responses[ack.partition];
            match purgatory::await_high_watermark(&ack.owner, ack.committed_at, deadline).await {
                Ok(()) => {
                    let isr = ack.owner.isr();
                    if isr.len() < ack.min_insync_replicas {
                        response.error_code = ErrorCode::NotEnoughReplicasAfterAppend.code();
                        response.error_message = Some(format!(
                            "the records of partition {} were appended, but the ISR {isr:?} \
                             shrank below min.insync.replicas={} before they were committed",
                            ack.owner.name(),
                            ack.min_insync_replicas
                        ));
                    }
                }
                Err(error) => {
                    response.error_code = error.error_code();
                    response.error_message = Some(error.to_string());
                }
            }
        }
    }
    if acks == 0 {
        return None;
    }
    Some(ProduceResponse {
        responses,
        ..Default::default()
    })
}

/// Checks and appends every partition of the request (blocking: run off the worker); returns
/// the answers and the appends `acks=all` must wait for.
fn append_all(
    broker: &Broker,
    request: ProduceRequest,
    internal_topics_allowed: bool,
) -> (Vec<TopicProduceResponse>, Vec<PendingAck>) {
    let acks = request.acks;
    let request_error = if !matches!(acks, -1..=1) {
        Some(ErrorCode::InvalidRequiredAcks.code())
    } else if request.transactional_id.is_some() {
        Some(ErrorCode::TransactionalIdAuthorizationFailed.code())
    } else {
        None
    };
    let image = broker.image();
    let now = now_ms();
    let mut pending = Vec::new();

    let responses = request
        .topic_data
        .into_iter()
        .enumerate()
        .map(|(topic_position, topic)| {
            let partition_responses = topic
                .partition_data
                .into_iter()
                .enumerate()
                .map(|(partition_position, data)| {
                    let failed = |error_code| PartitionProduceResponse {
                        index: data.index,
                        error_code,
                        base_offset: -1,
                        ..Default::default()
                    };
                    if let Some(code) = request_error {
                        return failed(code);
                    }
                    if is_internal_topic(&topic.name) && !internal_topics_allowed {
                        return failed(ErrorCode::InvalidTopicException.code());
                    }
                    let Some(partition) = broker.partitions.get(&topic.name, data.index) else {
                        return failed(broker.partition_not_hosted_error(&topic.name, data.index));
                    };
                    let mut min_insync_replicas = 1;
                    if acks == -1 {
                        // The ISR as the partition's leader knows it (committed changes, which
                        // it may learn from the controller before the image shows them).
                        let isr = partition.isr();
                        // The effective min.insync.replicas, layered exactly as DescribeConfigs
                        // reports it (topic override, this broker's and the cluster-wide dynamic
                        // configs, server.properties, default). Values are validated on write;
                        // should one not parse, Kafka's minimum of 1 applies.
                        let min_isr = broker
                            .config
                            .config_layers(&image, Some(&topic.name))
                            .topic_value("min.insync.replicas")
                            .and_then(|(value, _)| value.parse::<usize>().ok())
                            .unwrap_or(1);
                        min_insync_replicas = min_isr;
                        if isr.len() < min_isr {
                            let members: Vec<String> = isr.iter().map(i32::to_string).collect();
                            return PartitionProduceResponse {
                                error_message: Some(format!(
                                    "The size of the current ISR Set({}) is insufficient to \
                                     satisfy the min.isr requirement of {min_isr} for partition \
                                     {}-{}",
                                    members.join(", "),
                                    topic.name,
                                    data.index
                                )),
                                ..failed(ErrorCode::NotEnoughReplicas.code())
                            };
                        }
                    }
                    let Some(records) = data.records else {
                        return failed(ErrorCode::CorruptMessage.code());
                    };
                    match partition.append_as_leader(&records, now) {
                        Ok(appended) => {
                            pending.push(PendingAck {
                                topic: topic_position,
                                partition: partition_position,
                                owner: partition,
                                committed_at: appended.last_offset + 1,
                                min_insync_replicas,
                            });
                            PartitionProduceResponse {
                                index: data.index,
                                error_code: 0,
                                base_offset: appended.base_offset,
                                log_append_time_ms: appended.log_append_time,
                                log_start_offset: appended.log_start_offset,
                                ..Default::default()
                            }
                        }
                        Err(failure) => {
                            let (error_message, record_errors) = match &failure.error {
                                PartitionError::Refused(error) => {
                                    tracing::info!(topic = %topic.name, partition = data.index, %error, "append refused");
                                    describe_refusal(error, &topic.name, data.index)
                                }
                                // Storage failures were logged by the owner, once.
                                other => (other.to_string(), Vec::new()),
                            };
                            PartitionProduceResponse {
                                log_start_offset: failure.log_start_offset,
                                error_message: Some(error_message),
                                record_errors,
                                ..failed(failure.error.error_code())
                            }
                        }
                    }
                })
                .collect();
            TopicProduceResponse {
                name: topic.name,
                partition_responses,
            }
        })
        .collect();
    (responses, pending)
}

/// The partition-level message and per-record errors of a refused append to `topic`-`partition`,
/// as Kafka words them: a record with an out-of-range timestamp, and every record without key on a
/// compacted topic, is named by its index in the batch.
fn describe_refusal(
    error: &StorageError,
    topic: &str,
    partition: i32,
) -> (String, Vec<BatchIndexAndErrorMessage>) {
    let record_error = |batch_index: usize, message: String| BatchIndexAndErrorMessage {
        batch_index: i32::try_from(batch_index).unwrap_or(i32::MAX),
        batch_index_error_message: Some(message),
    };
    match error {
        StorageError::InvalidTimestamp { batch_index, .. } => (
            "One or more records have been rejected due to invalid timestamp".to_string(),
            vec![record_error(*batch_index, error.to_string())],
        ),
        StorageError::RecordsWithoutKey { batch_indexes } => {
            let message = format!(
                "Compacted topic cannot accept message without key in topic partition {topic}-{partition}"
            );
            let record_errors: Vec<BatchIndexAndErrorMessage> = batch_indexes
                .iter()
                .map(|&index| record_error(index, message.clone()))
                .collect();
            // Kafka's summary shows the first three, in Java's `RecordError` notation.
            let shown: Vec<String> = record_errors
                .iter()
                .take(3)
                .map(|record| {
                    format!(
                        "RecordError(batchIndex={}, message='{message}')",
                        record.batch_index
                    )
                })
                .collect();
            (
                format!(
                    "One or more records have been rejected due to {} record errors in total, \
                     and only showing the first three errors at most: [{}]",
                    record_errors.len(),
                    shown.join(", ")
                ),
                record_errors,
            )
        }
        other => (other.to_string(), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_timestamps_name_the_record_like_kafka() {
        let error = StorageError::InvalidTimestamp {
            timestamp: 5,
            offset: 3,
            batch_index: 3,
            lower: 10,
            upper: 20,
        };
        let (message, record_errors) = describe_refusal(&error, "t", 0);
        assert_eq!(
            message,
            "One or more records have been rejected due to invalid timestamp"
        );
        assert_eq!(record_errors.len(), 1);
        assert_eq!(record_errors[0].batch_index, 3);
        assert_eq!(
            record_errors[0].batch_index_error_message,
            Some(error.to_string())
        );
    }

    #[test]
    fn keyless_records_on_a_compacted_topic_are_each_named_like_kafka() {
        let error = StorageError::RecordsWithoutKey {
            batch_indexes: vec![0, 2, 3, 5],
        };
        let (message, record_errors) = describe_refusal(&error, "facts", 4);
        let per_record =
            "Compacted topic cannot accept message without key in topic partition facts-4";
        let indexes: Vec<i32> = record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(indexes, [0, 2, 3, 5]);
        assert!(record_errors
            .iter()
            .all(|e| e.batch_index_error_message.as_deref() == Some(per_record)));
        assert_eq!(
            message,
            format!(
                "One or more records have been rejected due to 4 record errors in total, and only \
                 showing the first three errors at most: [RecordError(batchIndex=0, message='{per_record}'), \
                 RecordError(batchIndex=2, message='{per_record}'), \
                 RecordError(batchIndex=3, message='{per_record}')]"
            )
        );
    }

    #[test]
    fn other_refusals_carry_their_own_message() {
        let error = StorageError::InvalidRecord("batch holds no record".into());
        let (message, record_errors) = describe_refusal(&error, "t", 0);
        assert_eq!(message, error.to_string());
        assert!(record_errors.is_empty());
    }
}
