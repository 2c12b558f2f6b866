//! `strom topics`: create, list, describe, delete and reconfigure topics through the Kafka admin
//! API (CreateTopics, Metadata, DescribeConfigs, DeleteTopics, AlterConfigs), elect leaders
//! (ElectLeaders, [`crate::leaders`]) and reassign partitions ([`crate::reassign`]).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigResource, ConfigSource, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::metadata::MetadataTopic;

use crate::client::{
    create_client, parse_key_value, topic_error_message, CliContext, ClientArgs, KafkaResultExt,
};
use crate::leaders::{elect_leaders, ElectionKind};
use crate::reassign::{list_reassignments, reassign};

/// How long the broker may take to answer an admin request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `strom topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: TopicsCommand,
}

/// The `strom topics` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(long)]
        replication_factor: Option<i32>,
        /// Topic config override `key=value` (repeatable).
        #[arg(long = "config", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Succeed without doing anything if the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topic names.
    List {
        /// Hide internal topics (names starting with `__`).
        #[arg(long)]
        exclude_internal: bool,
    },
    /// Describe partitions, leaders, replicas, ISR and non-default configs.
    Describe {
        /// Topic to describe (default: all topics).
        name: Option<String>,
        /// Only partitions whose ISR is smaller than their replica set (as
        /// `kafka-topics --describe --under-replicated-partitions`).
        #[arg(long)]
        under_replicated_partitions: bool,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Change topic configs: set and/or remove overrides.
    AlterConfig {
        /// Topic name.
        name: String,
        /// Config to set, `key=value` (repeatable).
        #[arg(long = "set", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// Config override to remove, returning it to the default (repeatable).
        #[arg(long = "delete")]
        delete: Vec<String>,
    },
    /// Elect partition leaders: the preferred replica (the first), or for partitions without a
    /// leader any live replica (unclean: records may be lost).
    #[command(group(clap::ArgGroup::new("target").required(true).args(["topic", "all_topic_partitions"])))]
    ElectLeaders {
        /// Topic whose partitions to elect leaders for.
        #[arg(long)]
        topic: Option<String>,
        /// Only this partition of the topic.
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        /// Every partition of the cluster.
        #[arg(long)]
        all_topic_partitions: bool,
        /// Kind of election.
        #[arg(long = "type", value_enum, default_value = "preferred")]
        election: ElectionKind,
    },
    /// Move a partition to new replicas (the new ones copy it before the old ones are dropped),
    /// or cancel its ongoing reassignment.
    #[command(group(clap::ArgGroup::new("change").required(true).args(["replicas", "cancel"])))]
    Reassign {
        /// Topic name.
        #[arg(long)]
        topic: String,
        /// Partition to move.
        #[arg(long)]
        partition: i32,
        /// Target replicas, broker ids with the preferred leader first: `1,2,3`.
        #[arg(long, value_delimiter = ',')]
        replicas: Option<Vec<i32>>,
        /// Cancel the partition's ongoing reassignment instead.
        #[arg(long)]
        cancel: bool,
        /// Wait up to this many seconds for the reassignment to complete.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// List ongoing partition reassignments.
    ListReassignments {
        /// Only this topic's partitions.
        #[arg(long)]
        topic: Option<String>,
    },
}

/// Runs `strom topics ...`.
pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let (admin, context): (AdminClient<CliContext>, _) =
        create_client(&args.client.client_config())?;
    // Fail fast (within seconds) when the cluster is unreachable.
    let metadata = args.client.fetch_metadata(None, false)?;
    let options = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    match args.command {
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            if if_not_exists && metadata.topics().iter().any(|topic| topic.name() == name) {
                return Ok(());
            }
            let mut new_topic = NewTopic::new(
                &name,
                partitions.unwrap_or(-1),
                TopicReplication::Fixed(replication_factor.unwrap_or(-1)),
            );
            for (key, value) in &configs {
                new_topic = new_topic.set(key, value);
            }
            let results = admin
                .create_topics([&new_topic], &options)
                .await
                .map_err(|error| args.client.unreachable(&context, &error))?;
            for result in results {
                if let Err((topic, code)) = result {
                    bail!("cannot create topic: {}", topic_error_message(&topic, code));
                }
            }
            println!("Created topic {name}.");
        }
        TopicsCommand::List { exclude_internal } => {
            let mut names: Vec<&str> = metadata
                .topics()
                .iter()
                .map(MetadataTopic::name)
                .filter(|name| !(exclude_internal && name.starts_with("__")))
                .collect();
            names.sort_unstable();
            for name in names {
                println!("{name}");
            }
        }
        TopicsCommand::Describe {
            name,
            under_replicated_partitions,
        } => {
            let mut topics: Vec<&MetadataTopic> = match &name {
                Some(wanted) => {
                    let topic = metadata
                        .topics()
                        .iter()
                        .find(|topic| topic.name() == wanted)
                        .ok_or_else(|| anyhow!("topic '{wanted}' does not exist"))?;
                    vec![topic]
                }
                None => metadata.topics().iter().collect(),
            };
            topics.sort_by_key(|topic| topic.name());
            for topic in topics {
                if let Some(code) = topic.error() {
                    bail!(topic_error_message(topic.name(), code.into()));
                }
                if under_replicated_partitions {
                    print!("{}", describe_under_replicated(topic));
                    continue;
                }
                let configs = match topic_overrides(&admin, &options, topic.name()).await {
                    Ok(configs) => configs
                        .iter()
                        .map(|(key, value)| format!("{key}={value}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    Err(error) => format!("(unavailable: {error:#})"),
                };
                print!("{}", describe_topic(topic, &configs));
            }
        }
        TopicsCommand::Delete { name } => {
            if !metadata.topics().iter().any(|topic| topic.name() == name) {
                bail!("topic '{name}' does not exist");
            }
            let results = admin
                .delete_topics(&[&name], &options)
                .await
                .map_err(|error| args.client.unreachable(&context, &error))?;
            for result in results {
                if let Err((topic, code)) = result {
                    bail!("cannot delete topic: {}", topic_error_message(&topic, code));
                }
            }
            println!("Deleted topic {name}.");
        }
        TopicsCommand::AlterConfig { name, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to change: give --set key=value and/or --delete key");
            }
            if !metadata.topics().iter().any(|topic| topic.name() == name) {
                bail!("topic '{name}' does not exist");
            }
            let current = topic_overrides(&admin, &options, &name).await?;
            let desired = apply_config_changes(current, &set, &delete);
            // rdkafka only wraps the non-incremental AlterConfigs API, which replaces the whole
            // set of topic overrides; so read the current overrides, edit them and write them
            // all back. A concurrent change by another client between the two steps is lost.
            let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&name));
            for (key, value) in &desired {
                alter = alter.set(key, value);
            }
            let results = admin
                .alter_configs([&alter], &options)
                .await
                .map_err(|error| args.client.unreachable(&context, &error))?;
            for result in results {
                if let Err((_, code)) = result {
                    bail!("cannot alter configs of topic '{name}': {code}");
                }
            }
            println!("Updated configs of topic {name}.");
        }
        TopicsCommand::ElectLeaders {
            topic,
            partition,
            all_topic_partitions: _,
            election,
        } => {
            let target = match topic {
                Some(topic) => {
                    let partitions = args.client.topic_partitions(&topic, false, partition)?;
                    Some((topic, partitions))
                }
                None => None,
            };
            elect_leaders(&args.client, election, target, ADMIN_TIMEOUT).await?;
        }
        TopicsCommand::Reassign {
            topic,
            partition,
            replicas,
            cancel: _,
            wait,
        } => {
            // Fails with a clear message if the topic or partition does not exist.
            args.client
                .topic_partitions(&topic, false, Some(partition))?;
            let wait = wait.map(Duration::from_secs);
            reassign(
                &args.client,
                &topic,
                partition,
                replicas,
                wait,
                ADMIN_TIMEOUT,
            )
            .await?;
        }
        TopicsCommand::ListReassignments { topic } => {
            let target = match topic {
                Some(topic) => {
                    let partitions = args.client.topic_partitions(&topic, false, None)?;
                    Some((topic, partitions))
                }
                None => None,
            };
            list_reassignments(&args.client, target, ADMIN_TIMEOUT).await?;
        }
    }
    Ok(())
}

/// The topic's explicitly set configs (source DYNAMIC_TOPIC_CONFIG, or non-default when the
/// broker does not report sources), sorted by key.
async fn topic_overrides(
    admin: &AdminClient<CliContext>,
    options: &AdminOptions,
    topic: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], options)
        .await
        .kafka_context(format!("cannot describe configs of topic '{topic}'"))?;
    let resource: ConfigResource = results
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no config description returned for topic '{topic}'"))?
        .map_err(|code| anyhow!("cannot describe configs of topic '{topic}': {code}"))?;
    Ok(resource
        .entries
        .into_iter()
        .filter(|entry| match entry.source {
            ConfigSource::DynamicTopic => true,
            ConfigSource::Unknown => !entry.is_default,
            _ => false,
        })
        .filter_map(|entry| entry.value.map(|value| (entry.name, value)))
        .collect())
}

/// Applies `--set` and `--delete` to the current overrides.
fn apply_config_changes(
    mut current: BTreeMap<String, String>,
    set: &[(String, String)],
    delete: &[String],
) -> BTreeMap<String, String> {
    for key in delete {
        current.remove(key);
    }
    for (key, value) in set {
        current.insert(key.clone(), value.clone());
    }
    current
}

/// Formats a topic like `kafka-topics --describe`.
fn describe_topic(topic: &MetadataTopic, configs: &str) -> String {
    let replication_factor = topic
        .partitions()
        .first()
        .map_or(0, |partition| partition.replicas().len());
    let mut out = format!(
        "Topic: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}\n",
        topic.name(),
        topic.partitions().len(),
        replication_factor,
        configs
    );
    let mut partitions: Vec<_> = topic.partitions().iter().collect();
    partitions.sort_by_key(|partition| partition.id());
    for partition in partitions {
        out.push_str(&format!(
            "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\n",
            topic.name(),
            partition.id(),
            leader_name(partition.leader()),
            join_ids(partition.replicas()),
            join_ids(partition.isr()),
        ));
    }
    out
}

/// The partitions of `topic` whose ISR is smaller than their replica set, one line each in
/// `kafka-topics --describe` form (nothing when all are fully replicated).
fn describe_under_replicated(topic: &MetadataTopic) -> String {
    let mut partitions: Vec<_> = topic
        .partitions()
        .iter()
        .filter(|partition| partition.isr().len() < partition.replicas().len())
        .collect();
    partitions.sort_by_key(|partition| partition.id());
    partitions
        .into_iter()
        .map(|partition| {
            format!(
                "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\n",
                topic.name(),
                partition.id(),
                leader_name(partition.leader()),
                join_ids(partition.replicas()),
                join_ids(partition.isr()),
            )
        })
        .collect()
}

fn leader_name(leader: i32) -> String {
    if leader < 0 {
        "none".to_string()
    } else {
        leader.to_string()
    }
}

fn join_ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn topics_args(argv: &[&str]) -> TopicsArgs {
        let mut full = vec!["strom", "topics"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full) {
            Ok(Cli {
                command: Command::Topics(args),
            }) => args,
            other => panic!("unexpected parse result: {other:?}"),
        }
    }

    #[test]
    fn create_with_options() {
        let args = topics_args(&[
            "create",
            "events",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=1000",
            "--bootstrap-server",
            "localhost:19092",
        ]);
        assert_eq!(args.client.bootstrap_server, "localhost:19092");
        match args.command {
            TopicsCommand::Create {
                name,
                partitions,
                replication_factor,
                configs,
                if_not_exists,
            } => {
                assert_eq!(name, "events");
                assert_eq!(partitions, Some(3));
                assert_eq!(replication_factor, Some(1));
                assert_eq!(
                    configs,
                    vec![("retention.ms".to_string(), "1000".to_string())]
                );
                assert!(!if_not_exists);
            }
            other => panic!("unexpected command {other:?}"),
        }
    }

    #[test]
    fn elect_leaders_needs_a_topic_or_every_partition() {
        let args = topics_args(&["elect-leaders", "--topic", "t", "--partition", "2"]);
        assert!(matches!(
            args.command,
            TopicsCommand::ElectLeaders {
                topic: Some(ref topic),
                partition: Some(2),
                all_topic_partitions: false,
                election: ElectionKind::Preferred,
            } if topic == "t"
        ));
        let args = topics_args(&[
            "elect-leaders",
            "--all-topic-partitions",
            "--type",
            "unclean",
        ]);
        assert!(matches!(
            args.command,
            TopicsCommand::ElectLeaders {
                topic: None,
                election: ElectionKind::Unclean,
                ..
            }
        ));
        for bad in [
            &["elect-leaders"][..],
            &["elect-leaders", "--partition", "1"],
            &["elect-leaders", "--topic", "t", "--all-topic-partitions"],
            &["elect-leaders", "--topic", "t", "--type", "random"],
        ] {
            let mut full = vec!["strom", "topics"];
            full.extend_from_slice(bad);
            assert!(Cli::try_parse_from(full).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reassign_takes_replicas_or_cancel() {
        let args = topics_args(&[
            "reassign",
            "--topic",
            "t",
            "--partition",
            "0",
            "--replicas",
            "3,1,2",
            "--wait",
            "30",
        ]);
        assert!(matches!(
            args.command,
            TopicsCommand::Reassign {
                partition: 0,
                replicas: Some(ref replicas),
                cancel: false,
                wait: Some(30),
                ..
            } if replicas == &[3, 1, 2]
        ));
        let args = topics_args(&["reassign", "--topic", "t", "--partition", "1", "--cancel"]);
        assert!(matches!(
            args.command,
            TopicsCommand::Reassign {
                replicas: None,
                cancel: true,
                ..
            }
        ));
        for bad in [
            &["reassign", "--topic", "t", "--partition", "1"][..],
            &[
                "reassign",
                "--topic",
                "t",
                "--partition",
                "1",
                "--cancel",
                "--replicas",
                "1",
            ],
            &["reassign", "--topic", "t", "--replicas", "1"],
            &[
                "reassign",
                "--topic",
                "t",
                "--partition",
                "0",
                "--replicas",
                "x",
            ],
        ] {
            let mut full = vec!["strom", "topics"];
            full.extend_from_slice(bad);
            assert!(Cli::try_parse_from(full).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bootstrap_server_before_subcommand_and_default() {
        let args = topics_args(&["--bootstrap-server", "h:1", "list"]);
        assert_eq!(args.client.bootstrap_server, "h:1");
        let args = topics_args(&["describe"]);
        assert_eq!(args.client.bootstrap_server, "127.0.0.1:9092");
        assert!(matches!(
            args.command,
            TopicsCommand::Describe {
                name: None,
                under_replicated_partitions: false
            }
        ));
    }

    #[test]
    fn alter_config_collects_sets_and_deletes() {
        let args = topics_args(&[
            "alter-config",
            "t",
            "--set",
            "retention.ms=5",
            "--delete",
            "segment.bytes",
            "--set",
            "cleanup.policy=compact",
        ]);
        match args.command {
            TopicsCommand::AlterConfig { name, set, delete } => {
                assert_eq!(name, "t");
                assert_eq!(set.len(), 2);
                assert_eq!(delete, vec!["segment.bytes".to_string()]);
            }
            other => panic!("unexpected command {other:?}"),
        }
    }

    #[test]
    fn config_changes_apply_deletes_then_sets() {
        let current: BTreeMap<String, String> = [
            ("retention.ms".to_string(), "1".to_string()),
            ("segment.bytes".to_string(), "2".to_string()),
        ]
        .into_iter()
        .collect();
        let desired = apply_config_changes(
            current,
            &[("retention.ms".to_string(), "9".to_string())],
            &["segment.bytes".to_string()],
        );
        assert_eq!(desired.len(), 1);
        assert_eq!(desired.get("retention.ms").map(String::as_str), Some("9"));
    }

    #[test]
    fn missing_topic_name_is_rejected() {
        assert!(Cli::try_parse_from(["strom", "topics", "create"]).is_err());
        assert!(Cli::try_parse_from(["strom", "topics", "create", "t", "--config", "x"]).is_err());
    }
}
