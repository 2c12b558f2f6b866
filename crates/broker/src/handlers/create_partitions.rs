//! CreatePartitions (API 37): grows topics to a new partition count through the metadata store.
//!
//! As in Kafka: a topic named twice is INVALID_REQUEST, an unknown topic UNKNOWN_TOPIC_OR_PARTITION,
//! a count that is not an increase INVALID_PARTITIONS. A manual assignment must list one replica set
//! per new partition, each of registered brokers (INVALID_REPLICA_ASSIGNMENT otherwise); the
//! replicas themselves are placed by the metadata store, as for automatic assignment.

use std::collections::HashMap;

use strom_metadata::error::codes;
use strom_metadata::MetadataError;
use strom_protocol::messages::create_partitions_request::{
    CreatePartitionsRequest, CreatePartitionsTopic,
};
use strom_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};

use super::create_topics::{check_replica_list, INVALID_REPLICA_ASSIGNMENT};
use crate::state::Broker;

/// Checks a manual assignment of the partitions to add, when the count is an increase.
fn check_assignments(broker: &Broker, topic: &CreatePartitionsTopic) -> Result<(), MetadataError> {
    let Some(assignments) = &topic.assignments else {
        return Ok(());
    };
    let image = broker.image();
    let Some(current) = image.topic(&topic.name).map(|t| t.partitions.len()) else {
        return Ok(());
    };
    let Some(added) = usize::try_from(topic.count)
        .ok()
        .and_then(|count| count.checked_sub(current))
    else {
        return Ok(());
    };
    if added > 0 && assignments.len() != added {
        return Err(MetadataError::new(
            INVALID_REPLICA_ASSIGNMENT,
            format!(
                "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                assignments.len()
            ),
        ));
    }
    assignments
        .iter()
        .try_for_each(|assignment| check_replica_list(&image, &assignment.broker_ids))
}

pub fn handle(
    broker: &Broker,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut occurrences: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *occurrences.entry(topic.name.as_str()).or_default() += 1;
    }
    let mut grew_any = false;
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let outcome = if occurrences[topic.name.as_str()] > 1 {
                Err(MetadataError::new(
                    codes::INVALID_REQUEST,
                    "Duplicate topic name.",
                ))
            } else {
                check_assignments(broker, topic).and_then(|()| {
                    broker.metadata.create_partitions(
                        &topic.name,
                        topic.count,
                        request.validate_only,
                    )
                })
            };
            let (error_code, error_message) = match outcome {
                Ok(()) => {
                    grew_any |= !request.validate_only;
                    (0, None)
                }
                Err(error) => (error.code, Some(error.message)),
            };
            CreatePartitionsTopicResult {
                name: topic.name.clone(),
                error_code,
                error_message,
            }
        })
        .collect();
    if grew_any {
        broker.sync_partitions();
    }
    CreatePartitionsResponse {
        throttle_time_ms: 0,
        results,
    }
}
