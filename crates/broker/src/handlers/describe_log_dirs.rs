//! DescribeLogDirs (key 35): the log directory of this broker with every replica it hosts (or
//! those asked for): size in bytes and offset lag — for a follower the committed records it still
//! lacks (its leader's high watermark, as last reported, minus its log end), 0 for a leader.
//!
//! Strom keeps all partitions in one directory (`log.dirs`, first entry). Kafka takes a whole
//! directory offline on a disk error; Strom takes only the failed partition offline, so the
//! directory is answered with KAFKA_STORAGE_ERROR while any of its partitions is offline (the
//! failed ones are left out, the healthy ones still listed, so tools see both). Volume sizes are
//! not measured: `total_bytes` and `usable_bytes` are -1 (Kafka's "unknown").

use std::collections::BTreeMap;

use strom_protocol::messages::describe_log_dirs_request::DescribeLogDirsRequest;
use strom_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResponse, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use strom_protocol::ErrorCode;

use crate::state::Broker;

pub fn handle(broker: &Broker, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted = |topic: &str, index: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.topic == topic && t.partitions.contains(&index)),
    };
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    let mut any_offline = false;
    for partition in broker.partitions.all() {
        if !wanted(&partition.topic, partition.index) {
            continue;
        }
        let Some((size, lag)) = partition.size_and_lag() else {
            any_offline = true;
            continue;
        };
        topics
            .entry(partition.topic.clone())
            .or_default()
            .push(DescribeLogDirsPartition {
                partition_index: partition.index,
                partition_size: size,
                offset_lag: lag,
                is_future_key: false,
            });
    }
    let topics = topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic { name, partitions }
        })
        .collect();
    DescribeLogDirsResponse {
        throttle_time_ms: 0,
        error_code: 0,
        results: vec![DescribeLogDirsResult {
            error_code: if any_offline {
                ErrorCode::KafkaStorageError.code()
            } else {
                0
            },
            log_dir: broker.config.log_dir().display().to_string(),
            topics,
            total_bytes: -1,
            usable_bytes: -1,
        }],
    }
}
