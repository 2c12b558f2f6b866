//! DeleteTopics (API 20): deletes topics by name (v0-5, and v6 entries with a name) or by topic id
//! (v6 entries without a name), then drops their partition logs and every group's committed offsets
//! for them, as Kafka does.
//!
//! Like Kafka's controller: a name or id given twice is INVALID_REQUEST, an entry with both a name
//! and an id (or neither) is INVALID_REQUEST, an unknown name is UNKNOWN_TOPIC_OR_PARTITION, an
//! unknown id UNKNOWN_TOPIC_ID, and with `delete.topic.enable=false` every topic fails with
//! TOPIC_DELETION_DISABLED (INVALID_REQUEST before v3).

use strom_metadata::MetadataError;
use strom_protocol::codec::Uuid;
use strom_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use strom_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use strom_protocol::ErrorCode;

use super::create_topics::count_occurrences;
use crate::state::Broker;

const ZERO_UUID: Uuid = [0; 16];

/// What one request entry names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Name(String),
    Id(Uuid),
    /// Both a name and an id, or neither.
    Ambiguous(Option<String>, Uuid),
}

fn targets(request: DeleteTopicsRequest, version: i16) -> Vec<Target> {
    if version < 6 {
        return request.topic_names.into_iter().map(Target::Name).collect();
    }
    request
        .topics
        .into_iter()
        .map(|topic| match (topic.name, topic.topic_id) {
            (Some(name), ZERO_UUID) => Target::Name(name),
            (None, id) if id != ZERO_UUID => Target::Id(id),
            (name, id) => Target::Ambiguous(name, id),
        })
        .collect()
}

/// Deletes one topic, returning its (name, id).
async fn delete(broker: &Broker, target: &Target) -> Result<(String, Uuid), MetadataError> {
    let name = match target {
        Target::Name(name) => name.clone(),
        Target::Id(id) => broker
            .image()
            .topic_by_id(id)
            .map(|topic| topic.name.clone())
            .ok_or_else(|| {
                MetadataError::of(
                    ErrorCode::UnknownTopicId,
                    "This server does not host this topic ID.",
                )
            })?,
        Target::Ambiguous(Some(_), _) => {
            return Err(MetadataError::of(
                ErrorCode::InvalidRequest,
                "You may not specify both topic name and topic id.",
            ))
        }
        Target::Ambiguous(None, _) => {
            return Err(MetadataError::of(
                ErrorCode::InvalidRequest,
                "Neither topic name nor id were specified.",
            ))
        }
    };
    let id = broker.controller.delete_topic(&name).await?;
    Ok((name, id))
}

pub async fn handle(
    broker: &Broker,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let targets = targets(request, version);
    let occurrences = count_occurrences(&targets);
    let mut responses = Vec::with_capacity(targets.len());
    for target in &targets {
        let outcome = if !broker.config.delete_topic_enable {
            let error = if version < 3 {
                ErrorCode::InvalidRequest
            } else {
                ErrorCode::TopicDeletionDisabled
            };
            Err(MetadataError::of(error, "Topic deletion is disabled."))
        } else if occurrences[target] > 1 {
            let what = if matches!(target, Target::Id(_)) {
                "id"
            } else {
                "name"
            };
            Err(MetadataError::of(
                ErrorCode::InvalidRequest,
                format!("Duplicate topic {what}."),
            ))
        } else {
            delete(broker, target).await
        };
        let (name, topic_id) = match target {
            Target::Name(name) => (Some(name.clone()), ZERO_UUID),
            Target::Id(id) => (None, *id),
            Target::Ambiguous(name, id) => (name.clone(), *id),
        };
        responses.push(match outcome {
            Ok((name, topic_id)) => DeletableTopicResult {
                name: Some(name),
                topic_id,
                error_code: ErrorCode::None.code(),
                error_message: None,
            },
            Err(error) => DeletableTopicResult {
                name,
                topic_id,
                error_code: error.code,
                error_message: Some(error.message),
            },
        });
    }
    // The publisher deletes the logs and the topics' committed offsets.
    broker.catch_up_with_controller().await;
    DeleteTopicsResponse {
        throttle_time_ms: 0,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::create_topics::tests::{create, test_broker};
    use strom_protocol::messages::delete_topics_request::DeleteTopicState;

    #[tokio::test]
    async fn deletes_by_name_and_by_id() {
        let (_dir, broker) = test_broker().await;
        create(&broker, &[("a", 1, &[]), ("b", 1, &[])], false).await;
        let b_id = broker.image().topic("b").expect("b exists").id;
        assert!(broker.partitions.get("a", 0).is_some());

        let by_name = DeleteTopicsRequest {
            topic_names: vec!["a".into(), "missing".into()],
            ..DeleteTopicsRequest::default()
        };
        let codes: Vec<i16> = handle(&broker, by_name, 5)
            .await
            .responses
            .iter()
            .map(|r| r.error_code)
            .collect();
        assert_eq!(
            codes,
            [
                ErrorCode::None.code(),
                ErrorCode::UnknownTopicOrPartition.code()
            ]
        );
        assert!(broker.image().topic("a").is_none());
        assert!(broker.partitions.get("a", 0).is_none());

        let by_id = DeleteTopicsRequest {
            topics: vec![
                DeleteTopicState {
                    name: None,
                    topic_id: b_id,
                },
                DeleteTopicState {
                    name: None,
                    topic_id: [9; 16],
                },
            ],
            ..DeleteTopicsRequest::default()
        };
        let responses = handle(&broker, by_id, 6).await.responses;
        assert_eq!(
            (responses[0].error_code, responses[0].name.as_deref()),
            (ErrorCode::None.code(), Some("b"))
        );
        assert_eq!(responses[0].topic_id, b_id);
        assert_eq!(
            (responses[1].error_code, responses[1].name.as_deref()),
            (ErrorCode::UnknownTopicId.code(), None)
        );
        assert!(broker
            .image()
            .topics
            .keys()
            .all(|name| name == "__consumer_offsets"));
    }

    #[tokio::test]
    async fn v6_entries_name_a_topic_by_name_or_id() {
        let id = [7; 16];
        let request = DeleteTopicsRequest {
            topics: vec![
                DeleteTopicState {
                    name: Some("a".into()),
                    topic_id: ZERO_UUID,
                },
                DeleteTopicState {
                    name: None,
                    topic_id: id,
                },
                DeleteTopicState {
                    name: Some("b".into()),
                    topic_id: id,
                },
                DeleteTopicState {
                    name: None,
                    topic_id: ZERO_UUID,
                },
            ],
            ..DeleteTopicsRequest::default()
        };
        assert_eq!(
            targets(request, 6),
            [
                Target::Name("a".into()),
                Target::Id(id),
                Target::Ambiguous(Some("b".into()), id),
                Target::Ambiguous(None, ZERO_UUID),
            ]
        );
    }

    #[tokio::test]
    async fn older_versions_use_topic_names() {
        let request = DeleteTopicsRequest {
            topic_names: vec!["x".into()],
            ..DeleteTopicsRequest::default()
        };
        assert_eq!(targets(request, 5), [Target::Name("x".into())]);
    }
}
