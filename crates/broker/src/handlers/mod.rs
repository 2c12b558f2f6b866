//! Request handlers, one module per Kafka API, and the table of API versions this broker serves.
//!
//! Each handler takes the decoded request and returns the response body; the connection encodes it
//! at the request's version. Version ranges: the minimum is what we choose to serve (record batches
//! are magic v2 only, so Produce starts at v3 and Fetch at v4, as in Kafka 4.0), the maximum is the
//! newest stable version in the schemas the codec was generated from.

mod alter_configs;
mod alter_partition_reassignments;
pub mod api_versions;
mod authorized_operations;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
pub(crate) mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_quorum;
mod describe_topic_partitions;
mod elect_leaders;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sync_group;

use std::sync::Arc;

use strom_protocol::messages::{api_info, stable_max_version, RequestBody, ResponseBody};

use crate::state::Broker;

/// What a handler knows about the request besides its body.
pub struct RequestContext {
    pub api_version: i16,
    /// The client id from the request header.
    pub client_id: Option<String>,
    /// The client's address, as group descriptions show it.
    pub peer: std::net::SocketAddr,
    /// The name of the listener the connection arrived on: Metadata, FindCoordinator and
    /// DescribeCluster answer with the brokers' endpoints of this listener (Kafka's
    /// `RequestContext.listenerName`).
    pub listener: Arc<str>,
}

/// The APIs we serve, with the lowest version of each.
const SERVED_APIS: &[(i16, i16)] = &[
    (0, 3),  // Produce
    (1, 4),  // Fetch
    (2, 1),  // ListOffsets
    (3, 0),  // Metadata
    (8, 0),  // OffsetCommit
    (9, 0),  // OffsetFetch
    (10, 0), // FindCoordinator
    (11, 0), // JoinGroup
    (12, 0), // Heartbeat
    (13, 0), // LeaveGroup
    (14, 0), // SyncGroup
    (15, 0), // DescribeGroups
    (16, 0), // ListGroups
    (18, 0), // ApiVersions
    (19, 0), // CreateTopics
    (20, 0), // DeleteTopics
    (21, 0), // DeleteRecords
    (22, 0), // InitProducerId
    (23, 2), // OffsetForLeaderEpoch (v2: current leader epoch, as KIP-320 clients send)
    (32, 0), // DescribeConfigs
    (33, 0), // AlterConfigs
    (35, 1), // DescribeLogDirs (v0 is gone from Kafka 4.0)
    (37, 0), // CreatePartitions
    (42, 0), // DeleteGroups
    (43, 0), // ElectLeaders
    (44, 0), // IncrementalAlterConfigs
    (45, 0), // AlterPartitionReassignments
    (46, 0), // ListPartitionReassignments
    (47, 0), // OffsetDelete
    (55, 0), // DescribeQuorum
    (60, 0), // DescribeCluster
    (75, 0), // DescribeTopicPartitions
];

/// The (min, max) versions served for an API key, or `None` if the API is not served.
pub fn supported_versions(api_key: i16) -> Option<(i16, i16)> {
    let (_, min) = SERVED_APIS.iter().find(|(key, _)| *key == api_key)?;
    let info = api_info(api_key)?;
    Some((*min.max(&info.min_version), stable_max_version(api_key)?))
}

/// Every served API with its version range, sorted by key.
pub fn served_apis() -> impl Iterator<Item = (i16, i16, i16)> {
    SERVED_APIS
        .iter()
        .filter_map(|(key, _)| supported_versions(*key).map(|(min, max)| (*key, min, max)))
}

/// Who sent a request, as the group coordinator records it for DescribeGroups.
fn client_identity(context: &RequestContext) -> crate::groups::ClientIdentity {
    crate::groups::ClientIdentity {
        client_id: context.client_id.clone().unwrap_or_default(),
        client_host: format!("/{}", context.peer.ip()),
    }
}

/// Runs the handler for one request. `None` means no response is sent (produce with acks=0).
pub async fn handle(
    broker: &Arc<Broker>,
    context: &RequestContext,
    request: RequestBody,
) -> Option<ResponseBody> {
    let version = context.api_version;
    let response = match request {
        RequestBody::ApiVersions(r) => ResponseBody::ApiVersions(api_versions::handle(r, version)),
        RequestBody::Metadata(r) => {
            ResponseBody::Metadata(metadata::handle(broker, r, version, &context.listener).await)
        }
        RequestBody::Produce(r) => {
            let internal_topics_allowed =
                context.client_id.as_deref() == Some(produce::ADMIN_CLIENT_ID);
            return produce::handle(broker, r, version, internal_topics_allowed)
                .await
                .map(ResponseBody::Produce);
        }
        RequestBody::Fetch(r) => ResponseBody::Fetch(fetch::handle(broker, r, version).await),
        RequestBody::DescribeLogDirs(r) => {
            ResponseBody::DescribeLogDirs(describe_log_dirs::handle(broker, r))
        }
        RequestBody::OffsetForLeaderEpoch(r) => {
            ResponseBody::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(broker, r))
        }
        RequestBody::ListOffsets(r) => {
            ResponseBody::ListOffsets(list_offsets::handle(broker, r, version).await)
        }
        RequestBody::CreateTopics(r) => {
            ResponseBody::CreateTopics(create_topics::handle(broker, r, version).await)
        }
        RequestBody::DeleteTopics(r) => {
            ResponseBody::DeleteTopics(delete_topics::handle(broker, r, version).await)
        }
        RequestBody::DeleteRecords(r) => {
            ResponseBody::DeleteRecords(delete_records::handle(broker, r, version).await)
        }
        RequestBody::InitProducerId(r) => {
            ResponseBody::InitProducerId(init_producer_id::handle(broker, r, version).await)
        }
        RequestBody::DescribeConfigs(r) => {
            ResponseBody::DescribeConfigs(describe_configs::handle(broker, r, version))
        }
        RequestBody::AlterConfigs(r) => {
            ResponseBody::AlterConfigs(alter_configs::handle(broker, r, version).await)
        }
        RequestBody::CreatePartitions(r) => {
            ResponseBody::CreatePartitions(create_partitions::handle(broker, r, version).await)
        }
        RequestBody::IncrementalAlterConfigs(r) => ResponseBody::IncrementalAlterConfigs(
            incremental_alter_configs::handle(broker, r, version).await,
        ),
        RequestBody::DescribeCluster(r) => ResponseBody::DescribeCluster(describe_cluster::handle(
            broker,
            r,
            version,
            &context.listener,
        )),
        RequestBody::DescribeQuorum(r) => {
            ResponseBody::DescribeQuorum(describe_quorum::handle(broker, r, version).await)
        }
        RequestBody::DescribeTopicPartitions(r) => {
            ResponseBody::DescribeTopicPartitions(describe_topic_partitions::handle(broker, r))
        }
        RequestBody::FindCoordinator(r) => ResponseBody::FindCoordinator(
            find_coordinator::handle(broker, r, version, &context.listener).await,
        ),
        RequestBody::JoinGroup(r) => ResponseBody::JoinGroup(
            join_group::handle(broker, r, version, client_identity(context)).await,
        ),
        RequestBody::SyncGroup(r) => {
            ResponseBody::SyncGroup(sync_group::handle(broker, r, version).await)
        }
        RequestBody::Heartbeat(r) => {
            ResponseBody::Heartbeat(heartbeat::handle(broker, r, version).await)
        }
        RequestBody::LeaveGroup(r) => {
            ResponseBody::LeaveGroup(leave_group::handle(broker, r, version).await)
        }
        RequestBody::OffsetCommit(r) => {
            ResponseBody::OffsetCommit(offset_commit::handle(broker, r, version).await)
        }
        RequestBody::OffsetFetch(r) => {
            ResponseBody::OffsetFetch(offset_fetch::handle(broker, r, version).await)
        }
        RequestBody::OffsetDelete(r) => {
            ResponseBody::OffsetDelete(offset_delete::handle(broker, r, version).await)
        }
        RequestBody::ListGroups(r) => {
            ResponseBody::ListGroups(list_groups::handle(broker, r, version).await)
        }
        RequestBody::DescribeGroups(r) => {
            ResponseBody::DescribeGroups(describe_groups::handle(broker, r, version).await)
        }
        RequestBody::DeleteGroups(r) => {
            ResponseBody::DeleteGroups(delete_groups::handle(broker, r, version).await)
        }
        RequestBody::ElectLeaders(r) => {
            ResponseBody::ElectLeaders(elect_leaders::handle(broker, r, version).await)
        }
        RequestBody::AlterPartitionReassignments(r) => ResponseBody::AlterPartitionReassignments(
            alter_partition_reassignments::handle(broker, r, version).await,
        ),
        RequestBody::ListPartitionReassignments(r) => ResponseBody::ListPartitionReassignments(
            list_partition_reassignments::handle(broker, r, version).await,
        ),
        other => {
            // The connection only dispatches APIs listed in SERVED_APIS.
            tracing::warn!(
                api_key = other.api_key(),
                "request for an API without a handler"
            );
            return None;
        }
    };
    Some(response)
}
