//! `strom topics elect-leaders` (like `kafka-leader-election.sh`): preferred or unclean leader
//! election through the ElectLeaders API, with one line per outcome as Kafka's tool prints them.

use std::time::Duration;

use anyhow::bail;
use clap::ValueEnum;
use strom_protocol::messages::elect_leaders_request::{ElectLeadersRequest, TopicPartitions};
use strom_protocol::messages::elect_leaders_response::ElectLeadersResponse;
use strom_protocol::ErrorCode;

use crate::admin_rpc;
use crate::client::ClientArgs;

/// ElectLeaders' API key and the version sent.
const ELECT_LEADERS: (i16, i16) = (43, 2);

/// The kind of election (`--type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ElectionKind {
    /// The first replica leads, if it is live and in sync.
    Preferred,
    /// A partition without a leader gets any live replica (records may be lost).
    Unclean,
}

impl ElectionKind {
    fn code(self) -> i8 {
        match self {
            Self::Preferred => 0,
            Self::Unclean => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Preferred => "PREFERRED",
            Self::Unclean => "UNCLEAN",
        }
    }
}

/// Runs an election for `partitions` of `topic` (every partition of the cluster for `None`)
/// and prints the outcome; fails if any partition failed for another reason than needing none.
pub async fn elect_leaders(
    client: &ClientArgs,
    kind: ElectionKind,
    topic: Option<(String, Vec<i32>)>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let request = ElectLeadersRequest {
        election_type: kind.code(),
        topic_partitions: topic
            .map(|(topic, partitions)| vec![TopicPartitions { topic, partitions }]),
        timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
    };
    let (api_key, version) = ELECT_LEADERS;
    let response: ElectLeadersResponse = admin_rpc::call(
        &client.bootstrap_server,
        api_key,
        version,
        &request,
        timeout,
    )
    .await?;
    let report = Report::of(&response);
    print!("{}", report.render(kind));
    if response.error_code != 0 {
        bail!(
            "leader election failed: {}",
            error_name(response.error_code)
        );
    }
    if !report.failed.is_empty() {
        bail!(
            "leader election failed for {} partition(s)",
            report.failed.len()
        );
    }
    Ok(())
}

fn error_name(code: i16) -> String {
    ErrorCode::from_code(code).map_or_else(|| format!("error {code}"), |e| e.name().to_string())
}

/// The outcomes of an election, grouped as Kafka's tool reports them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    elected: Vec<String>,
    not_needed: Vec<String>,
    /// (partition, error name, message)
    failed: Vec<(String, String, String)>,
}

impl Report {
    fn of(response: &ElectLeadersResponse) -> Self {
        let mut report = Self::default();
        for topic in &response.replica_election_results {
            for partition in &topic.partition_result {
                let name = format!("{}-{}", topic.topic, partition.partition_id);
                if partition.error_code == ErrorCode::None.code() {
                    report.elected.push(name);
                } else if partition.error_code == ErrorCode::ElectionNotNeeded.code() {
                    report.not_needed.push(name);
                } else {
                    report.failed.push((
                        name,
                        error_name(partition.error_code),
                        partition.error_message.clone().unwrap_or_default(),
                    ));
                }
            }
        }
        report
    }

    fn render(&self, kind: ElectionKind) -> String {
        let mut out = String::new();
        if !self.elected.is_empty() {
            out.push_str(&format!(
                "Successfully completed leader election ({}) for partitions {}\n",
                kind.name(),
                self.elected.join(", ")
            ));
        }
        if !self.not_needed.is_empty() {
            out.push_str(&format!(
                "Valid replica already elected for partitions {}\n",
                self.not_needed.join(", ")
            ));
        }
        for (partition, error, message) in &self.failed {
            out.push_str(&format!(
                "Error completing leader election ({}) for partition: {partition}: {error}: {message}\n",
                kind.name()
            ));
        }
        if out.is_empty() {
            out.push_str("No partition needed a leader election.\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_protocol::messages::elect_leaders_response::{
        PartitionResult, ReplicaElectionResult,
    };

    #[test]
    fn outcomes_are_reported_like_kafkas_tool() {
        let result = |partition_id, error: ErrorCode| PartitionResult {
            partition_id,
            error_code: error.code(),
            error_message: (error != ErrorCode::None).then(|| "why".to_string()),
        };
        let response = ElectLeadersResponse {
            replica_election_results: vec![ReplicaElectionResult {
                topic: "t".into(),
                partition_result: vec![
                    result(0, ErrorCode::None),
                    result(1, ErrorCode::ElectionNotNeeded),
                    result(2, ErrorCode::PreferredLeaderNotAvailable),
                    result(3, ErrorCode::None),
                ],
            }],
            ..ElectLeadersResponse::default()
        };
        let report = Report::of(&response);
        assert_eq!(
            report.render(ElectionKind::Preferred),
            "Successfully completed leader election (PREFERRED) for partitions t-0, t-3\n\
             Valid replica already elected for partitions t-1\n\
             Error completing leader election (PREFERRED) for partition: t-2: \
             PREFERRED_LEADER_NOT_AVAILABLE: why\n"
        );
        assert_eq!(
            Report::default().render(ElectionKind::Unclean),
            "No partition needed a leader election.\n"
        );
    }
}
