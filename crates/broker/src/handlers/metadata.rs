//! Metadata (key 3): brokers, controller, cluster id, and topics with their partitions' leaders,
//! replicas and ISR. Unknown topics are created here when `auto.create.topics.enable` is on and the
//! client allows it (v4+), as Kafka does: the handler asks the controller and, once this broker has
//! applied the new topic, returns it at once. Authorized operations, when asked for, are everything
//! a topic or the cluster supports, as Kafka reports them without an authorizer. A partition whose
//! storage failed on this broker is reported with KAFKA_STORAGE_ERROR and this broker among its
//! offline replicas.
//!
//! Endpoints follow Kafka's listener rule: a client is told the brokers' endpoints of the listener
//! its connection arrived on. A broker that lacks that listener is left out of the brokers, and a
//! partition it leads is answered with LISTENER_NOT_FOUND (v6+; LEADER_NOT_AVAILABLE before) and
//! no leader, so a misconfigured listener shows up as such instead of as an unreachable address.

use strom_metadata::{MetadataImage, TopicImage};
use strom_protocol::messages::metadata_request::MetadataRequest;
use strom_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};

use strom_protocol::ErrorCode;

use super::authorized_operations;
use crate::partitions::Role;
use crate::state::{endpoint_on, Broker};

/// Metadata v6 introduced LISTENER_NOT_FOUND; older clients get LEADER_NOT_AVAILABLE instead.
const FIRST_VERSION_WITH_LISTENER_NOT_FOUND: i16 = 6;

/// Who is asking: the request's version and the listener its connection arrived on.
#[derive(Clone, Copy)]
struct Asker<'a> {
    version: i16,
    listener: &'a str,
}

/// Metadata v11 dropped the cluster's authorized operations (DescribeCluster reports them).
const LAST_VERSION_WITH_CLUSTER_OPERATIONS: i16 = 10;

/// Topics Kafka treats as internal.
pub fn is_internal_topic(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}

pub async fn handle(
    broker: &Broker,
    request: MetadataRequest,
    version: i16,
    listener: &str,
) -> MetadataResponse {
    let asker = Asker { version, listener };
    let requested = match request.topics {
        None => None,
        // In v0 an empty list means "all topics".
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics),
    };

    let mut topics: Vec<MetadataResponseTopic> = match requested {
        None => {
            let image = broker.image();
            image
                .topics
                .values()
                .map(|topic| describe_topic(broker, &image, topic, asker))
                .collect()
        }
        Some(requested) => {
            let mut topics = Vec::with_capacity(requested.len());
            for wanted in requested {
                let topic = match wanted.name {
                    Some(name) => {
                        lookup_or_create(broker, &name, request.allow_auto_topic_creation, asker)
                            .await
                    }
                    None => {
                        let image = broker.image();
                        match image.topic_by_id(&wanted.topic_id) {
                            Some(topic) => describe_topic(broker, &image, topic, asker),
                            None => MetadataResponseTopic {
                                error_code: ErrorCode::UnknownTopicId.code(),
                                topic_id: wanted.topic_id,
                                ..Default::default()
                            },
                        }
                    }
                };
                topics.push(topic);
            }
            topics
        }
    };

    if request.include_topic_authorized_operations {
        // Every topic looked up by name, known or not; a topic id nobody knows gets nothing.
        for topic in topics
            .iter_mut()
            .filter(|topic| topic.error_code != ErrorCode::UnknownTopicId.code())
        {
            topic.topic_authorized_operations = authorized_operations::TOPIC;
        }
    }
    let cluster_authorized_operations = if request.include_cluster_authorized_operations
        && version <= LAST_VERSION_WITH_CLUSTER_OPERATIONS
    {
        authorized_operations::CLUSTER
    } else {
        authorized_operations::NOT_REQUESTED
    };

    let image = broker.image();
    MetadataResponse {
        // Only brokers that can serve, at their endpoint on this connection's listener: Kafka
        // leaves out fenced brokers and brokers without that listener.
        brokers: image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter_map(|b| {
                let endpoint = endpoint_on(b, listener)?;
                Some(MetadataResponseBroker {
                    node_id: b.id,
                    host: endpoint.host.clone(),
                    port: i32::from(endpoint.port),
                    rack: b.rack.clone(),
                })
            })
            .collect(),
        cluster_id: Some(image.cluster_id.clone()),
        controller_id: controller_id_for_clients(broker, &image, listener),
        topics,
        cluster_authorized_operations,
        ..Default::default()
    }
}

async fn lookup_or_create(
    broker: &Broker,
    name: &str,
    client_allows_creation: bool,
    asker: Asker<'_>,
) -> MetadataResponseTopic {
    let image = broker.image();
    if let Some(topic) = image.topic(name) {
        return describe_topic(broker, &image, topic, asker);
    }
    let unknown = |error_code| MetadataResponseTopic {
        error_code,
        name: Some(name.to_string()),
        ..Default::default()
    };
    if !(broker.config.auto_create_topics_enable && client_allows_creation) {
        return unknown(ErrorCode::UnknownTopicOrPartition.code());
    }
    let created = broker
        .controller
        .create_topic(
            name,
            broker.config.num_partitions,
            broker.config.default_replication_factor,
            &[],
            false,
        )
        .await;
    broker.catch_up_with_controller().await;
    match created {
        Ok(_) => tracing::info!(topic = name, "auto-created topic"),
        // Another connection created it first: fine.
        Err(error) if error.code == ErrorCode::TopicAlreadyExists.code() => {}
        Err(error) => {
            tracing::warn!(topic = name, message = %error.message, "auto-create failed");
            return unknown(error.code);
        }
    }
    let image = broker.image();
    match image.topic(name) {
        Some(topic) => describe_topic(broker, &image, topic, asker),
        None => unknown(ErrorCode::UnknownTopicOrPartition.code()),
    }
}

/// A topic as the image has it, with this broker's offline replicas: a partition whose storage
/// failed here is reported with KAFKA_STORAGE_ERROR and this broker in its offline replicas. A
/// leader that is not registered, or lacks the asker's listener, is reported as no leader (see
/// the module doc).
fn describe_topic(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
    asker: Asker<'_>,
) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: 0,
        name: Some(topic.name.clone()),
        topic_id: topic.id,
        is_internal: is_internal_topic(&topic.name),
        partitions: topic
            .partitions
            .iter()
            .map(|(&partition_index, p)| {
                let offline_here = broker
                    .partitions
                    .get(&topic.name, partition_index)
                    .is_some_and(|hosted| hosted.role() == Role::Offline);
                // A leader known to the image with an endpoint on the asker's listener.
                let leader_error = match image.brokers.get(&p.leader) {
                    Some(leader) if endpoint_on(leader, asker.listener).is_some() => None,
                    Some(_) if asker.version >= FIRST_VERSION_WITH_LISTENER_NOT_FOUND => {
                        Some(ErrorCode::ListenerNotFound)
                    }
                    _ => Some(ErrorCode::LeaderNotAvailable),
                };
                MetadataResponsePartition {
                    // A replica here whose disk failed is KAFKA_STORAGE_ERROR; a partition
                    // without a leader (its replicas fenced or shutting down) is
                    // LEADER_NOT_AVAILABLE, as Kafka reports it. Clients retry both.
                    error_code: if offline_here {
                        ErrorCode::KafkaStorageError.code()
                    } else {
                        leader_error.unwrap_or(ErrorCode::None).code()
                    },
                    partition_index,
                    leader_id: if leader_error.is_some() { -1 } else { p.leader },
                    leader_epoch: p.leader_epoch,
                    replica_nodes: p.replicas.clone(),
                    isr_nodes: p.isr.clone(),
                    offline_replicas: if offline_here {
                        vec![broker.node_id]
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect(),
        ..Default::default()
    }
}

/// The controller id clients are told (Metadata, DescribeCluster): the active controller when it
/// is an unfenced broker reachable on `listener` (combined mode), else the lowest such broker
/// (Kafka's KRaft brokers name a random alive broker): a controller-only node serves no client
/// requests, and admin clients send controller-bound requests to this id, which forwards them.
pub(crate) fn controller_id_for_clients(
    broker: &Broker,
    image: &MetadataImage,
    listener: &str,
) -> i32 {
    let serves = |id: i32| {
        image
            .brokers
            .get(&id)
            .is_some_and(|b| !b.fenced && endpoint_on(b, listener).is_some())
    };
    match broker.controller.active_controller_id() {
        Some(id) if serves(id) => id,
        Some(_) => image
            .brokers
            .keys()
            .copied()
            .find(|id| serves(*id))
            .unwrap_or(-1),
        None => -1,
    }
}
