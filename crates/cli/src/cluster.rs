//! `strom cluster describe`: the cluster id, the active controller, the metadata quorum (leader,
//! epoch, high watermark, each voter's and observer's log end offset, lag behind the leader and
//! last fetch / caught-up times, like `kafka-metadata-quorum describe --status --replication`)
//! and the brokers (fenced, unfenced or shutting down, rack, endpoints).
//!
//! Speaks the protocol directly ([`crate::wire`]): librdkafka sends neither DescribeQuorum nor
//! Strom's tagged fields of DescribeCluster (asking for fenced brokers too; a broker's state and
//! every listener it registered). Against Kafka, which ignores them and lists live brokers only,
//! brokers show as unfenced with the endpoint of the listener asked.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use strom_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use strom_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use strom_protocol::messages::describe_quorum_request::{
    DescribeQuorumRequest, PartitionData, TopicData,
};
use strom_protocol::messages::describe_quorum_response::{
    DescribeQuorumResponse, Node, ReplicaState,
};
use strom_protocol::ErrorCode;

use crate::client::ClientArgs;
use crate::wire::WireClient;

const DESCRIBE_QUORUM: i16 = 55;
const DESCRIBE_CLUSTER: i16 = 60;
/// How long a connection or one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The metadata log's topic.
const METADATA_TOPIC: &str = "__cluster_metadata";
/// DescribeCluster's endpoint type of brokers.
const ENDPOINT_TYPE_BROKER: i8 = 1;

/// Options of `strom cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The `strom cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Print the cluster id, the controller, the metadata quorum and the brokers.
    Describe,
}

/// Runs `strom cluster ...`.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Describe => describe(&args.client).await,
    }
}

async fn describe(client_args: &ClientArgs) -> anyhow::Result<()> {
    let mut client = WireClient::connect(&client_args.bootstrap_server, REQUEST_TIMEOUT).await?;
    let request = DescribeClusterRequest {
        include_cluster_authorized_operations: false,
        endpoint_type: ENDPOINT_TYPE_BROKER,
        strom_include_fenced_brokers: true,
    };
    let (cluster, _): (DescribeClusterResponse, _) =
        client.call(DESCRIBE_CLUSTER, 1, &request).await?;
    if cluster.error_code != 0 {
        bail!(
            "{} refused DescribeCluster: {}",
            client.address(),
            error_text(cluster.error_code, cluster.error_message.as_deref())
        );
    }
    let quorum = if client.version(DESCRIBE_QUORUM, 2).is_some() {
        let request = DescribeQuorumRequest {
            topics: vec![TopicData {
                topic_name: METADATA_TOPIC.to_string(),
                partitions: vec![PartitionData { partition_index: 0 }],
            }],
        };
        Some(client.call(DESCRIBE_QUORUM, 2, &request).await?.0)
    } else {
        None
    };
    print!("{}", render(&cluster, quorum.as_ref(), now_ms()));
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn error_text(code: i16, message: Option<&str>) -> String {
    let name = ErrorCode::from_code(code).map_or("UNKNOWN", ErrorCode::name);
    match message.filter(|m| !m.is_empty()) {
        Some(message) => format!("{name} ({message})"),
        None => name.to_string(),
    }
}

/// The report: cluster, quorum (when the broker serves DescribeQuorum), brokers.
fn render(
    cluster: &DescribeClusterResponse,
    quorum: Option<&DescribeQuorumResponse>,
    now_ms: i64,
) -> String {
    let mut out = String::new();
    let controller = if cluster.controller_id < 0 {
        "none".to_string()
    } else {
        cluster.controller_id.to_string()
    };
    let _ = writeln!(out, "Cluster ID: {}", cluster.cluster_id);
    let _ = writeln!(out, "Controller: {controller}");
    match quorum {
        Some(quorum) => render_quorum(&mut out, quorum, now_ms),
        None => out.push_str("Metadata quorum: not described (DescribeQuorum not served)\n"),
    }
    render_brokers(&mut out, &cluster.brokers);
    out
}

fn render_quorum(out: &mut String, quorum: &DescribeQuorumResponse, now_ms: i64) {
    let partition = quorum
        .topics
        .iter()
        .filter(|t| t.topic_name == METADATA_TOPIC)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == 0);
    let partition = match partition {
        _ if quorum.error_code != 0 => {
            let _ = writeln!(
                out,
                "Metadata quorum: unavailable: {}",
                error_text(quorum.error_code, quorum.error_message.as_deref())
            );
            return;
        }
        Some(p) if p.error_code != 0 => {
            let _ = writeln!(
                out,
                "Metadata quorum: unavailable: {}",
                error_text(p.error_code, p.error_message.as_deref())
            );
            return;
        }
        Some(p) => p,
        None => {
            out.push_str("Metadata quorum: unavailable: no answer for __cluster_metadata-0\n");
            return;
        }
    };
    let leader = if partition.leader_id < 0 {
        "none".to_string()
    } else {
        partition.leader_id.to_string()
    };
    let _ = writeln!(
        out,
        "Metadata quorum: leader {leader}, epoch {}, high watermark {}",
        partition.leader_epoch, partition.high_watermark
    );
    let leader_end = partition
        .current_voters
        .iter()
        .find(|v| v.replica_id == partition.leader_id)
        .map(|v| v.log_end_offset)
        .filter(|end| *end >= 0);
    let groups = [
        ("Voters", &partition.current_voters),
        ("Observers", &partition.observers),
    ];
    for (title, replicas) in groups {
        if replicas.is_empty() {
            let _ = writeln!(out, "  {title}: none");
            continue;
        }
        let _ = writeln!(out, "  {title}:");
        let mut rows = vec![[
            "NODE".to_string(),
            "STATUS".to_string(),
            "LOG END".to_string(),
            "LAG".to_string(),
            "LAST FETCH".to_string(),
            "LAST CAUGHT UP".to_string(),
            "ENDPOINT".to_string(),
        ]];
        for replica in replicas {
            let status = if replica.replica_id == partition.leader_id {
                "leader"
            } else if title == "Voters" {
                "follower"
            } else {
                "observer"
            };
            rows.push(replica_row(
                replica,
                status,
                leader_end,
                &quorum.nodes,
                now_ms,
            ));
        }
        push_table(out, "    ", &rows);
    }
}

fn replica_row(
    replica: &ReplicaState,
    status: &str,
    leader_end: Option<i64>,
    nodes: &[Node],
    now_ms: i64,
) -> [String; 7] {
    let known = |value: i64| (value >= 0).then_some(value);
    let ago = |timestamp: i64| {
        known(timestamp).map_or("-".to_string(), |at| {
            format!("{} ms ago", now_ms.saturating_sub(at).max(0))
        })
    };
    let log_end = known(replica.log_end_offset);
    let lag = leader_end
        .zip(log_end)
        .map_or("-".to_string(), |(leader, end)| {
            leader.saturating_sub(end).to_string()
        });
    let endpoint = nodes
        .iter()
        .find(|node| node.node_id == replica.replica_id)
        .map(|node| {
            node.listeners
                .iter()
                .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|endpoints| !endpoints.is_empty())
        .unwrap_or_else(|| "-".to_string());
    [
        replica.replica_id.to_string(),
        status.to_string(),
        log_end.map_or("-".to_string(), |end| end.to_string()),
        lag,
        ago(replica.last_fetch_timestamp),
        ago(replica.last_caught_up_timestamp),
        endpoint,
    ]
}

/// A broker's state from Strom's tagged fields (Kafka lists live brokers only: unfenced).
fn broker_state(broker: &DescribeClusterBroker) -> &'static str {
    match (broker.strom_fenced, broker.strom_in_controlled_shutdown) {
        (false, false) => "unfenced",
        (false, true) => "shutting down",
        (true, false) => "fenced",
        (true, true) => "fenced (shut down)",
    }
}

fn render_brokers(out: &mut String, brokers: &[DescribeClusterBroker]) {
    if brokers.is_empty() {
        out.push_str("Brokers: none\n");
        return;
    }
    out.push_str("Brokers:\n");
    let mut sorted: Vec<&DescribeClusterBroker> = brokers.iter().collect();
    sorted.sort_by_key(|b| b.broker_id);
    let mut rows = vec![[
        "ID".to_string(),
        "STATE".to_string(),
        "RACK".to_string(),
        "ENDPOINTS".to_string(),
    ]];
    for broker in sorted {
        let endpoints = if broker.strom_listeners.is_empty() {
            format!("{}:{}", broker.host, broker.port)
        } else {
            broker
                .strom_listeners
                .iter()
                .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
                .collect::<Vec<_>>()
                .join(",")
        };
        rows.push([
            broker.broker_id.to_string(),
            broker_state(broker).to_string(),
            broker.rack.clone().unwrap_or_else(|| "-".to_string()),
            endpoints,
        ]);
    }
    push_table(out, "  ", &rows);
}

/// Writes `rows` as left-aligned columns (the last one unpadded).
fn push_table<const N: usize>(out: &mut String, indent: &str, rows: &[[String; N]]) {
    let widths: Vec<usize> = (0..N)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = indent.to_string();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[column]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use strom_protocol::messages::describe_cluster_response::StromListener;
    use strom_protocol::messages::describe_quorum_response::{
        Listener, PartitionData as QuorumPartition, TopicData as QuorumTopic,
    };

    use super::*;
    use crate::{Cli, Command};

    #[test]
    fn parses_cluster_describe() {
        let cli =
            Cli::try_parse_from(["strom", "cluster", "describe", "--bootstrap-server", "h:9"])
                .unwrap();
        let Command::Cluster(args) = cli.command else {
            panic!("expected cluster");
        };
        assert_eq!(args.client.bootstrap_server, "h:9");
        assert!(matches!(args.command, ClusterCommand::Describe));
    }

    fn replica(id: i32, log_end: i64, fetched: i64) -> ReplicaState {
        ReplicaState {
            replica_id: id,
            replica_directory_id: [0; 16],
            log_end_offset: log_end,
            last_fetch_timestamp: fetched,
            last_caught_up_timestamp: fetched,
        }
    }

    fn broker(id: i32, fenced: bool, shutting_down: bool) -> DescribeClusterBroker {
        DescribeClusterBroker {
            broker_id: id,
            host: "h".into(),
            port: 9092,
            rack: (id == 1).then(|| "r1".to_string()),
            strom_fenced: fenced,
            strom_in_controlled_shutdown: shutting_down,
            strom_listeners: vec![StromListener {
                name: "PLAINTEXT".into(),
                host: "h".into(),
                port: 9090 + id,
                security_protocol: 0,
            }],
        }
    }

    #[test]
    fn renders_the_quorum_with_lag_and_the_brokers_with_their_state() {
        let cluster = DescribeClusterResponse {
            cluster_id: "abc".into(),
            controller_id: 2,
            brokers: vec![
                broker(3, true, true),
                broker(1, false, false),
                broker(2, false, true),
                broker(4, true, false),
            ],
            ..Default::default()
        };
        let quorum = DescribeQuorumResponse {
            topics: vec![QuorumTopic {
                topic_name: METADATA_TOPIC.into(),
                partitions: vec![QuorumPartition {
                    leader_id: 2,
                    leader_epoch: 7,
                    high_watermark: 40,
                    current_voters: vec![
                        replica(1, 38, 9_500),
                        replica(2, 41, 10_000),
                        replica(3, -1, -1),
                    ],
                    ..Default::default()
                }],
            }],
            nodes: vec![Node {
                node_id: 1,
                listeners: vec![Listener {
                    name: "CONTROLLER".into(),
                    host: "h".into(),
                    port: 9093,
                }],
            }],
            ..Default::default()
        };
        let text = render(&cluster, Some(&quorum), 10_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Cluster ID: abc");
        assert_eq!(lines[1], "Controller: 2");
        assert_eq!(
            lines[2],
            "Metadata quorum: leader 2, epoch 7, high watermark 40"
        );
        assert_eq!(lines[3], "  Voters:");
        let words = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            words(lines[5]),
            "1 follower 38 3 500 ms ago 500 ms ago CONTROLLER://h:9093"
        );
        assert_eq!(words(lines[6]), "2 leader 41 0 0 ms ago 0 ms ago -");
        assert_eq!(words(lines[7]), "3 follower - - - - -");
        assert_eq!(lines[8], "  Observers: none");
        assert_eq!(lines[9], "Brokers:");
        let brokers: Vec<String> = lines[11..].iter().map(|l| words(l)).collect();
        assert_eq!(
            brokers,
            [
                "1 unfenced r1 PLAINTEXT://h:9091",
                "2 shutting down - PLAINTEXT://h:9092",
                "3 fenced (shut down) - PLAINTEXT://h:9093",
                "4 fenced - PLAINTEXT://h:9094",
            ]
        );
    }

    #[test]
    fn renders_a_quorum_without_a_leader_as_unavailable() {
        let cluster = DescribeClusterResponse::default();
        let quorum = DescribeQuorumResponse {
            topics: vec![QuorumTopic {
                topic_name: METADATA_TOPIC.into(),
                partitions: vec![QuorumPartition {
                    error_code: ErrorCode::NotLeaderOrFollower.code(),
                    error_message: None,
                    ..Default::default()
                }],
            }],
            ..Default::default()
        };
        let text = render(&cluster, Some(&quorum), 0);
        assert!(
            text.contains("Metadata quorum: unavailable: NOT_LEADER_OR_FOLLOWER"),
            "{text}"
        );
        assert!(text.contains("Controller: none"), "{text}");
        assert!(text.contains("Brokers: none"), "{text}");
    }
}
