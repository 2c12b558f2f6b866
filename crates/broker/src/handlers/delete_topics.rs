//! DeleteTopics (API 20): deletes topics by name (v0-5, and v6 entries with a name) or by topic id
//! (v6 entries without a name), then drops their partition logs.
//!
//! Like Kafka's controller: a name or id given twice is INVALID_REQUEST, an entry with both a name
//! and an id (or neither) is INVALID_REQUEST, an unknown name is UNKNOWN_TOPIC_OR_PARTITION, an
//! unknown id UNKNOWN_TOPIC_ID, and with `delete.topic.enable=false` every topic fails with
//! TOPIC_DELETION_DISABLED (INVALID_REQUEST before v3).

use std::collections::HashMap;

use strom_metadata::error::codes;
use strom_metadata::MetadataError;
use strom_protocol::codec::Uuid;
use strom_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use strom_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};

use crate::state::Broker;

const UNKNOWN_TOPIC_ID: i16 = 100;
const TOPIC_DELETION_DISABLED: i16 = 73;
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
fn delete(broker: &Broker, target: &Target) -> Result<(String, Uuid), MetadataError> {
    let name = match target {
        Target::Name(name) => name.clone(),
        Target::Id(id) => broker
            .image()
            .topic_by_id(id)
            .map(|topic| topic.name.clone())
            .ok_or_else(|| {
                MetadataError::new(UNKNOWN_TOPIC_ID, "This server does not host this topic ID.")
            })?,
        Target::Ambiguous(Some(_), _) => {
            return Err(MetadataError::new(
                codes::INVALID_REQUEST,
                "You may not specify both topic name and topic id.",
            ))
        }
        Target::Ambiguous(None, _) => {
            return Err(MetadataError::new(
                codes::INVALID_REQUEST,
                "Neither topic name nor id were specified.",
            ))
        }
    };
    let id = broker.metadata.delete_topic(&name)?;
    Ok((name, id))
}

pub fn handle(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let targets = targets(request, version);
    let mut occurrences: HashMap<&Target, usize> = HashMap::new();
    for target in &targets {
        *occurrences.entry(target).or_default() += 1;
    }
    let mut deleted_any = false;
    let responses = targets
        .iter()
        .map(|target| {
            let outcome = if !broker.config.delete_topic_enable {
                let code = if version < 3 {
                    codes::INVALID_REQUEST
                } else {
                    TOPIC_DELETION_DISABLED
                };
                Err(MetadataError::new(code, "Topic deletion is disabled."))
            } else if occurrences[target] > 1 {
                let what = if matches!(target, Target::Id(_)) {
                    "id"
                } else {
                    "name"
                };
                Err(MetadataError::new(
                    codes::INVALID_REQUEST,
                    format!("Duplicate topic {what}."),
                ))
            } else {
                delete(broker, target)
            };
            let (name, topic_id) = match target {
                Target::Name(name) => (Some(name.clone()), ZERO_UUID),
                Target::Id(id) => (None, *id),
                Target::Ambiguous(name, id) => (name.clone(), *id),
            };
            match outcome {
                Ok((name, topic_id)) => {
                    deleted_any = true;
                    DeletableTopicResult {
                        name: Some(name),
                        topic_id,
                        error_code: 0,
                        error_message: None,
                    }
                }
                Err(error) => DeletableTopicResult {
                    name,
                    topic_id,
                    error_code: error.code,
                    error_message: Some(error.message),
                },
            }
        })
        .collect();
    if deleted_any {
        broker.sync_partitions();
    }
    DeleteTopicsResponse {
        throttle_time_ms: 0,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_protocol::messages::delete_topics_request::DeleteTopicState;

    #[test]
    fn v6_entries_name_a_topic_by_name_or_id() {
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

    #[test]
    fn older_versions_use_topic_names() {
        let request = DeleteTopicsRequest {
            topic_names: vec!["x".into()],
            ..DeleteTopicsRequest::default()
        };
        assert_eq!(targets(request, 5), [Target::Name("x".into())]);
    }
}
