//! DeleteRecords (API 21): moves partitions' log start offsets forward, deleting the segments that
//! fall wholly below them, and reports each partition's new low watermark.
//!
//! Offset -1 means the high watermark. An offset beyond it (or otherwise negative) is
//! OFFSET_OUT_OF_RANGE, as in Kafka; a partition this broker does not host
//! is UNKNOWN_TOPIC_OR_PARTITION; a topic whose `cleanup.policy` lacks `delete` refuses with
//! ErrorCode::PolicyViolation.code(), as in Kafka; one whose storage failed, KAFKA_STORAGE_ERROR. Failed partitions
//! report a low watermark of -1. The partition's owner does the work, off the async worker.

use strom_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsRequest,
};
use strom_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use strom_protocol::ErrorCode;
use strom_storage::StorageError;

use crate::partitions::{off_worker, PartitionError};
use crate::state::Broker;

/// Deletes the records of one partition below the requested offset: `(low watermark, error code)`.
fn delete_partition(broker: &Broker, topic: &str, request: &DeleteRecordsPartition) -> (i64, i16) {
    let Some(partition) = broker.partitions.get(topic, request.partition_index) else {
        return (-1, ErrorCode::UnknownTopicOrPartition.code());
    };
    match partition.delete_records_before(request.offset) {
        Ok(low_watermark) => (low_watermark, 0),
        Err(error) => {
            if let PartitionError::Refused(refusal) = &error {
                if !matches!(refusal, StorageError::OffsetOutOfRange { .. }) {
                    tracing::warn!(topic, partition = request.partition_index, offset = request.offset, %error, "DeleteRecords failed");
                }
            }
            (-1, error.error_code())
        }
    }
}

/// Answers off the async worker: deleting segments is disk work.
pub async fn handle(
    broker: &Broker,
    request: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    off_worker(|| delete_records(broker, request))
}

fn delete_records(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| DeleteRecordsTopicResult {
            partitions: topic
                .partitions
                .iter()
                .map(|partition| {
                    let (low_watermark, error_code) =
                        delete_partition(broker, &topic.name, partition);
                    DeleteRecordsPartitionResult {
                        partition_index: partition.partition_index,
                        low_watermark,
                        error_code,
                    }
                })
                .collect(),
            name: topic.name,
        })
        .collect();
    DeleteRecordsResponse {
        throttle_time_ms: 0,
        topics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::create_topics::tests::{create, test_broker};
    use bytes::Bytes;
    use strom_protocol::messages::delete_records_request::DeleteRecordsTopic;
    use strom_protocol::records::{BatchBuilder, Compression};

    /// The request offset meaning "up to the high watermark".
    const HIGH_WATERMARK: i64 = -1;

    fn delete(broker: &Broker, topic: &str, partitions: &[(i32, i64)]) -> Vec<(i64, i16)> {
        let request = DeleteRecordsRequest {
            topics: vec![DeleteRecordsTopic {
                name: topic.into(),
                partitions: partitions
                    .iter()
                    .map(|(partition_index, offset)| DeleteRecordsPartition {
                        partition_index: *partition_index,
                        offset: *offset,
                    })
                    .collect(),
            }],
            timeout_ms: 1000,
        };
        delete_records(broker, request).topics[0]
            .partitions
            .iter()
            .map(|p| (p.low_watermark, p.error_code))
            .collect()
    }

    #[tokio::test]
    async fn deletes_up_to_the_high_watermark_only() {
        let (_dir, broker) = test_broker().await;
        create(
            &broker,
            &[
                ("t", 1, &[]),
                ("compacted", 1, &[("cleanup.policy", Some("compact"))]),
            ],
            false,
        )
        .await;
        assert_eq!(
            delete(
                &broker,
                "t",
                &[(0, HIGH_WATERMARK), (0, 5), (0, -7), (1, 0)]
            ),
            [
                (0, 0),
                (-1, 1),
                (-1, 1),
                (-1, ErrorCode::UnknownTopicOrPartition.code())
            ]
        );
        assert_eq!(
            delete(&broker, "compacted", &[(0, 0)]),
            [(-1, ErrorCode::PolicyViolation.code())]
        );
        assert_eq!(
            delete(&broker, "missing", &[(0, 0)]),
            [(-1, ErrorCode::UnknownTopicOrPartition.code())]
        );

        let mut batch = BatchBuilder::new(0, Compression::None, 0);
        for _ in 0..5 {
            batch.push(0, None, Some(Bytes::from_static(b"v")), Vec::new());
        }
        let partition = broker.partitions.get("t", 0).expect("partition t-0");
        // Written but not committed, a state only replication can produce.
        partition
            .log_for_test()
            .append(&batch.build(), 0, 0)
            .expect("append");
        // Appended but not committed: nothing may be deleted past the high watermark.
        assert_eq!(delete(&broker, "t", &[(0, 2)]), [(-1, 1)]);
        assert_eq!(delete(&broker, "t", &[(0, HIGH_WATERMARK)]), [(0, 0)]);
        let mut log = partition.log_for_test();
        let end = log.log_end_offset();
        log.update_high_watermark(end);
        drop(log);
        assert_eq!(delete(&broker, "t", &[(0, 2)]), [(2, 0)]);
        assert_eq!(delete(&broker, "t", &[(0, 1)]), [(2, 0)]);
        assert_eq!(delete(&broker, "t", &[(0, 6)]), [(-1, 1)]);
        assert_eq!(delete(&broker, "t", &[(0, HIGH_WATERMARK)]), [(5, 0)]);
        assert_eq!(partition.log_for_test().log_start_offset(), 5);
    }
}
