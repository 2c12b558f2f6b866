//! DescribeTopicPartitions (API 75, KIP-966): topics by name, or every topic, with their
//! partitions' leader, leader epoch, replicas, ISR and offline replicas, a page at a time — what
//! current admin clients use to describe topics. Follows Kafka's `DescribeTopicPartitionsRequest
//! Handler` and `KRaftMetadataCache`:
//!
//! - topics are answered in name order, starting at the cursor's topic and partition; at most
//!   `ResponsePartitionLimit` partitions (clamped to 1..=2000, Kafka's
//!   `max.request.partition.size.limit`) per response, and `NextCursor` names the first partition
//!   left out (a topic with no room left at all is not listed);
//! - a named topic that does not exist is UNKNOWN_TOPIC_OR_PARTITION (INVALID_TOPIC_EXCEPTION for
//!   an illegal name); when every topic is asked for, only existing ones are listed;
//! - a cursor whose topic is not among the named ones, or whose partition is negative, makes the
//!   request invalid: each named topic gets INVALID_REQUEST;
//! - partitions carry no error: a leader without a registration is -1; offline replicas are those
//!   on unregistered or fenced brokers, and this broker's own replica when its storage failed;
//!   eligible leader replicas and last known ELR are empty (Strom elects from the ISR only);
//! - authorized operations are every operation of a topic, as Kafka reports them without an
//!   authorizer.

use std::collections::BTreeSet;

use strom_metadata::controller::validate_topic_name;
use strom_metadata::{MetadataImage, TopicImage};
use strom_protocol::messages::describe_topic_partitions_request::DescribeTopicPartitionsRequest;
use strom_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponse, DescribeTopicPartitionsResponsePartition,
    DescribeTopicPartitionsResponseTopic,
};
use strom_protocol::ErrorCode;

use super::authorized_operations;
use super::metadata::is_internal_topic;
use crate::partitions::Role;
use crate::state::Broker;

/// Kafka's `max.request.partition.size.limit` default: the most partitions in one response.
const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

pub fn handle(
    broker: &Broker,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = broker.image();
    let cursor = request.cursor.as_ref();
    let cursor_topic = cursor.map_or("", |c| c.topic_name.as_str());
    let fetch_all = request.topics.is_empty();
    let names: BTreeSet<&str> = if fetch_all {
        image
            .topics
            .keys()
            .map(String::as_str)
            .filter(|name| *name >= cursor_topic)
            .collect()
    } else {
        request
            .topics
            .iter()
            .map(|topic| topic.name.as_str())
            .filter(|name| *name >= cursor_topic)
            .collect()
    };
    if let Some(cursor) = cursor {
        if (!fetch_all && !names.contains(cursor.topic_name.as_str())) || cursor.partition_index < 0
        {
            return invalid_request(&request);
        }
    }

    let limit = request
        .response_partition_limit
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    let mut remaining = usize::try_from(limit).unwrap_or(1);
    let mut response = DescribeTopicPartitionsResponse::default();
    for name in names {
        if remaining == 0 {
            // The previous topics filled the page: the next one starts the next page.
            response.next_cursor = Some(Cursor {
                topic_name: name.to_string(),
                partition_index: 0,
            });
            break;
        }
        let Some(topic) = image.topic(name) else {
            if !fetch_all {
                response.topics.push(unknown_topic(name));
            }
            continue;
        };
        let start = match cursor {
            Some(cursor) if cursor.topic_name == name => cursor.partition_index,
            _ => 0,
        };
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        let room = i32::try_from(remaining).unwrap_or(i32::MAX);
        let upper = count.min(start.saturating_add(room));
        let partitions: Vec<_> = (start..upper)
            .filter_map(|index| describe_partition(broker, &image, topic, index))
            .collect();
        remaining = remaining.saturating_sub(partitions.len());
        response.topics.push(DescribeTopicPartitionsResponseTopic {
            error_code: ErrorCode::None.code(),
            name: Some(topic.name.clone()),
            topic_id: topic.id,
            is_internal: is_internal_topic(&topic.name),
            partitions,
            topic_authorized_operations: authorized_operations::TOPIC,
        });
        if upper < count {
            response.next_cursor = Some(Cursor {
                topic_name: topic.name.clone(),
                partition_index: upper,
            });
            break;
        }
    }
    response
}

/// A named topic the image does not have.
fn unknown_topic(name: &str) -> DescribeTopicPartitionsResponseTopic {
    let error = if validate_topic_name(name).is_ok() {
        ErrorCode::UnknownTopicOrPartition
    } else {
        ErrorCode::InvalidTopicException
    };
    DescribeTopicPartitionsResponseTopic {
        error_code: error.code(),
        name: Some(name.to_string()),
        is_internal: is_internal_topic(name),
        topic_authorized_operations: authorized_operations::TOPIC,
        ..Default::default()
    }
}

/// Kafka's error response: INVALID_REQUEST for each named topic.
fn invalid_request(request: &DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    DescribeTopicPartitionsResponse {
        topics: request
            .topics
            .iter()
            .map(|topic| DescribeTopicPartitionsResponseTopic {
                error_code: ErrorCode::InvalidRequest.code(),
                name: Some(topic.name.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn describe_partition(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
    index: i32,
) -> Option<DescribeTopicPartitionsResponsePartition> {
    let partition = topic.partitions.get(&index)?;
    let offline_here = broker
        .partitions
        .get(&topic.name, index)
        .is_some_and(|hosted| hosted.role() == Role::Offline);
    let offline_replicas = partition
        .replicas
        .iter()
        .copied()
        .filter(|id| {
            let fenced = image.brokers.get(id).is_none_or(|b| b.fenced);
            fenced || (*id == broker.node_id && offline_here)
        })
        .collect();
    Some(DescribeTopicPartitionsResponsePartition {
        error_code: ErrorCode::None.code(),
        partition_index: index,
        leader_id: if image.brokers.contains_key(&partition.leader) {
            partition.leader
        } else {
            -1
        },
        leader_epoch: partition.leader_epoch,
        replica_nodes: partition.replicas.clone(),
        isr_nodes: partition.isr.clone(),
        eligible_leader_replicas: Some(Vec::new()),
        last_known_elr: Some(Vec::new()),
        offline_replicas,
    })
}

#[cfg(test)]
mod tests {
    use strom_protocol::messages::describe_topic_partitions_request::{
        Cursor as RequestCursor, TopicRequest,
    };

    use super::*;
    use crate::handlers::create_topics::tests::{create, test_broker};

    fn request(
        topics: &[&str],
        limit: i32,
        cursor: Option<(&str, i32)>,
    ) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest {
            topics: topics
                .iter()
                .map(|name| TopicRequest {
                    name: (*name).to_string(),
                })
                .collect(),
            response_partition_limit: limit,
            cursor: cursor.map(|(topic_name, partition_index)| RequestCursor {
                topic_name: topic_name.to_string(),
                partition_index,
            }),
        }
    }

    /// A page: (topic, partitions listed) per topic, and the next cursor.
    type Page = (Vec<(String, Vec<i32>)>, Option<(String, i32)>);

    /// The page a response holds.
    fn pages(response: &DescribeTopicPartitionsResponse) -> Page {
        (
            response
                .topics
                .iter()
                .map(|t| {
                    (
                        t.name.clone().unwrap_or_default(),
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect(),
            response
                .next_cursor
                .as_ref()
                .map(|c| (c.topic_name.clone(), c.partition_index)),
        )
    }

    #[tokio::test]
    async fn describes_named_topics_with_their_partitions() {
        let (_dir, broker) = test_broker().await;
        create(&broker, &[("orders", 3, &[])], false).await;
        let response = handle(
            &broker,
            request(&["orders", "missing", "bad/name"], 2000, None),
        );
        assert!(response.next_cursor.is_none());
        let [bad, missing, orders] = response.topics.as_slice() else {
            panic!("three topics in name order: {response:?}");
        };
        assert_eq!(bad.error_code, ErrorCode::InvalidTopicException.code());
        assert_eq!(
            missing.error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        assert_eq!(missing.topic_id, [0; 16]);
        assert_eq!(orders.error_code, 0);
        assert_eq!(orders.topic_id, broker.image().topic("orders").unwrap().id);
        assert!(!orders.is_internal);
        assert_eq!(
            orders.topic_authorized_operations,
            authorized_operations::TOPIC
        );
        for (index, partition) in orders.partitions.iter().enumerate() {
            assert_eq!(partition.partition_index, i32::try_from(index).unwrap());
            assert_eq!(partition.error_code, 0);
            assert_eq!(partition.leader_id, broker.node_id);
            assert!(partition.leader_epoch >= 0);
            assert_eq!(partition.replica_nodes, vec![broker.node_id]);
            assert_eq!(partition.isr_nodes, vec![broker.node_id]);
            assert_eq!(partition.eligible_leader_replicas, Some(Vec::new()));
            assert_eq!(partition.last_known_elr, Some(Vec::new()));
            assert!(partition.offline_replicas.is_empty());
        }
    }

    #[tokio::test]
    async fn pages_through_every_topic_with_the_cursor() {
        let (_dir, broker) = test_broker().await;
        create(
            &broker,
            &[("a", 3, &[]), ("b", 2, &[]), ("c", 1, &[])],
            false,
        )
        .await;
        // Every topic, in name order: the internal offsets topic sorts first.
        let everything = handle(&broker, request(&[], 2000, None));
        assert_eq!(
            everything.topics[0].name.as_deref(),
            Some("__consumer_offsets")
        );
        assert!(everything.topics[0].is_internal);
        // Two partitions a page from topic a on: the cursor points into a topic, or at the next.
        let first = handle(&broker, request(&[], 2, Some(("a", 0))));
        assert_eq!(
            pages(&first),
            (vec![("a".into(), vec![0, 1])], Some(("a".into(), 2)))
        );
        let second = handle(&broker, request(&[], 2, Some(("a", 2))));
        assert_eq!(
            pages(&second),
            (
                vec![("a".into(), vec![2]), ("b".into(), vec![0])],
                Some(("b".into(), 1))
            )
        );
        let last = handle(&broker, request(&[], 2, Some(("b", 1))));
        assert_eq!(
            pages(&last),
            (vec![("b".into(), vec![1]), ("c".into(), vec![0])], None)
        );
        // A full page ends before the next topic.
        let exact = handle(&broker, request(&["a", "b"], 3, None));
        assert_eq!(
            pages(&exact),
            (vec![("a".into(), vec![0, 1, 2])], Some(("b".into(), 0)))
        );
        // A limit below 1 means 1.
        let tiny = handle(&broker, request(&["c"], 0, None));
        assert_eq!(pages(&tiny), (vec![("c".into(), vec![0])], None));
    }

    #[tokio::test]
    async fn a_cursor_outside_the_named_topics_is_an_invalid_request() {
        let (_dir, broker) = test_broker().await;
        create(&broker, &[("a", 1, &[])], false).await;
        for cursor in [("b", 0), ("a", -1)] {
            let response = handle(&broker, request(&["a"], 10, Some(cursor)));
            let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
            assert_eq!(codes, vec![ErrorCode::InvalidRequest.code()], "{cursor:?}");
        }
    }
}
