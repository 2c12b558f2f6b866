//! `strom topics reassign` and `strom topics list-reassignments`: partition reassignments
//! (KIP-455) through AlterPartitionReassignments and ListPartitionReassignments, which
//! librdkafka does not offer.

use std::time::{Duration, Instant};

use anyhow::bail;
use strom_protocol::messages::alter_partition_reassignments_request::{
    AlterPartitionReassignmentsRequest, ReassignablePartition, ReassignableTopic,
};
use strom_protocol::messages::alter_partition_reassignments_response::AlterPartitionReassignmentsResponse;
use strom_protocol::messages::list_partition_reassignments_request::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsTopics,
};
use strom_protocol::messages::list_partition_reassignments_response::ListPartitionReassignmentsResponse;
use strom_protocol::ErrorCode;

use crate::admin_rpc;
use crate::client::ClientArgs;

/// API keys and the versions sent.
const ALTER_PARTITION_REASSIGNMENTS: (i16, i16) = (45, 0);
const LIST_PARTITION_REASSIGNMENTS: (i16, i16) = (46, 0);
/// Pause between two looks at an ongoing reassignment.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

fn error_name(code: i16) -> String {
    ErrorCode::from_code(code).map_or_else(|| format!("error {code}"), |e| e.name().to_string())
}

fn ids(list: &[i32]) -> String {
    list.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts (or, for `None`, cancels) the reassignment of `topic`-`partition`; with `wait`, waits
/// until it has completed (no longer listed) or `wait` has passed.
pub async fn reassign(
    client: &ClientArgs,
    topic: &str,
    partition: i32,
    replicas: Option<Vec<i32>>,
    wait: Option<Duration>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let request = AlterPartitionReassignmentsRequest {
        timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
        topics: vec![ReassignableTopic {
            name: topic.to_string(),
            partitions: vec![ReassignablePartition {
                partition_index: partition,
                replicas: replicas.clone(),
            }],
        }],
    };
    let (api_key, version) = ALTER_PARTITION_REASSIGNMENTS;
    let response: AlterPartitionReassignmentsResponse = admin_rpc::call(
        &client.bootstrap_server,
        api_key,
        version,
        &request,
        timeout,
    )
    .await?;
    if response.error_code != 0 {
        bail!(
            "cannot reassign {topic}-{partition}: {}: {}",
            error_name(response.error_code),
            response.error_message.unwrap_or_default()
        );
    }
    let outcome = response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition);
    match outcome {
        Some(p) if p.error_code != 0 => bail!(
            "cannot reassign {topic}-{partition}: {}: {}",
            error_name(p.error_code),
            p.error_message.clone().unwrap_or_default()
        ),
        Some(_) => {}
        None => bail!("the broker did not answer for {topic}-{partition}"),
    }
    match &replicas {
        Some(replicas) => println!(
            "Started the reassignment of {topic}-{partition} to replicas {}.",
            ids(replicas)
        ),
        None => println!("Cancelled the reassignment of {topic}-{partition}."),
    }
    let Some(wait) = wait else {
        return Ok(());
    };
    let deadline = Instant::now() + wait;
    loop {
        let ongoing = list(client, Some((topic.to_string(), vec![partition])), timeout).await?;
        if ongoing.topics.is_empty() {
            println!("The reassignment of {topic}-{partition} is complete.");
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the reassignment of {topic}-{partition} did not complete within {wait:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn list(
    client: &ClientArgs,
    topic: Option<(String, Vec<i32>)>,
    timeout: Duration,
) -> anyhow::Result<ListPartitionReassignmentsResponse> {
    let request = ListPartitionReassignmentsRequest {
        timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
        topics: topic.map(|(name, partition_indexes)| {
            vec![ListPartitionReassignmentsTopics {
                name,
                partition_indexes,
            }]
        }),
    };
    let (api_key, version) = LIST_PARTITION_REASSIGNMENTS;
    let response: ListPartitionReassignmentsResponse = admin_rpc::call(
        &client.bootstrap_server,
        api_key,
        version,
        &request,
        timeout,
    )
    .await?;
    if response.error_code != 0 {
        bail!(
            "cannot list reassignments: {}: {}",
            error_name(response.error_code),
            response.error_message.unwrap_or_default()
        );
    }
    Ok(response)
}

/// Prints the ongoing reassignments of `topic`'s partitions (every partition for `None`).
pub async fn list_reassignments(
    client: &ClientArgs,
    topic: Option<(String, Vec<i32>)>,
    timeout: Duration,
) -> anyhow::Result<()> {
    print!("{}", render(&list(client, topic, timeout).await?));
    Ok(())
}

fn render(response: &ListPartitionReassignmentsResponse) -> String {
    let mut lines = Vec::new();
    for topic in &response.topics {
        for p in &topic.partitions {
            lines.push(format!(
                "Topic: {}\tPartition: {}\tReplicas: {}\tAdding: {}\tRemoving: {}\n",
                topic.name,
                p.partition_index,
                ids(&p.replicas),
                ids(&p.adding_replicas),
                ids(&p.removing_replicas)
            ));
        }
    }
    if lines.is_empty() {
        return "No partition reassignment is in progress.\n".to_string();
    }
    lines.sort();
    lines.concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_protocol::messages::list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    };

    #[test]
    fn ongoing_reassignments_are_listed_one_line_each() {
        let response = ListPartitionReassignmentsResponse {
            topics: vec![OngoingTopicReassignment {
                name: "t".into(),
                partitions: vec![OngoingPartitionReassignment {
                    partition_index: 0,
                    replicas: vec![1, 2, 4, 3],
                    adding_replicas: vec![4],
                    removing_replicas: vec![3],
                }],
            }],
            ..ListPartitionReassignmentsResponse::default()
        };
        assert_eq!(
            render(&response),
            "Topic: t\tPartition: 0\tReplicas: 1,2,4,3\tAdding: 4\tRemoving: 3\n"
        );
        assert_eq!(
            render(&ListPartitionReassignmentsResponse::default()),
            "No partition reassignment is in progress.\n"
        );
    }
}
