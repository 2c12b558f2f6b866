//! `strom groups`: list, describe, delete consumer groups and reset their committed offsets, like
//! `kafka-consumer-groups.sh`. Uses ListGroups + DescribeGroups (librdkafka's group list),
//! OffsetFetch / OffsetCommit through a consumer carrying the group's id that never subscribes
//! (so it never joins the group), ListOffsets for log end offsets and DeleteGroups.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::groups::GroupInfo;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use strom_protocol::codec::{get_i16, Decode};
use strom_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;

use crate::client::{create_client, topic_error_message, CliContext, ClientArgs, KafkaResultExt};

/// How long the brokers may take to answer a group request.
const GROUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The group states a broker reports (Kafka's classic group states).
const GROUP_STATES: [&str; 5] = [
    "Empty",
    "Stable",
    "PreparingRebalance",
    "CompletingRebalance",
    "Dead",
];

/// Options of `strom groups`.
#[derive(Debug, Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: GroupsCommand,
}

/// The `strom groups` subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List groups with their state and protocol type.
    List {
        /// Only groups in this state (Empty, Stable, PreparingRebalance, CompletingRebalance,
        /// Dead).
        #[arg(long, ignore_case = true, value_parser = GROUP_STATES)]
        state: Option<String>,
    },
    /// Show a group's state, members and, per partition, committed offset, log end offset and
    /// lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Delete groups (they must have no active members).
    Delete {
        /// Group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Compute new committed offsets for a group; commits them only with --execute.
    ResetOffsets(ResetOffsetsArgs),
}

/// Options of `strom groups reset-offsets`.
#[derive(Debug, Args)]
pub struct ResetOffsetsArgs {
    /// Group id.
    pub group: String,
    /// Topic to reset, optionally restricted to partitions: `topic` or `topic:0,2` (repeatable).
    #[arg(long = "topic", required = true, value_parser = parse_topic_spec)]
    pub topics: Vec<TopicSpec>,
    /// Where to move the offsets.
    #[command(flatten)]
    pub target: ResetTarget,
    /// Commit the new offsets (without it, only print the plan).
    #[arg(long)]
    pub execute: bool,
}

/// The target of `reset-offsets`: exactly one of the options.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct ResetTarget {
    /// The earliest offset of each partition (log start offset).
    #[arg(long)]
    pub to_earliest: bool,
    /// The log end offset of each partition.
    #[arg(long)]
    pub to_latest: bool,
    /// The first offset whose timestamp is at or after this UTC time,
    /// `YYYY-MM-DDTHH:MM:SS[.sss][Z]`.
    #[arg(long, value_parser = parse_datetime_millis)]
    pub to_datetime: Option<i64>,
    /// The first offset whose timestamp is at or after these milliseconds since the epoch.
    #[arg(long)]
    pub to_timestamp: Option<i64>,
    /// This offset (moved into the partition's range if outside it).
    #[arg(long)]
    pub to_offset: Option<i64>,
    /// The committed offset moved by N (negative: back), kept within the partition's range.
    #[arg(long, allow_hyphen_values = true)]
    pub shift_by: Option<i64>,
}

/// A `--topic` argument: a topic and the partitions to act on (`None`: all).
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    pub topic: String,
    pub partitions: Option<Vec<i32>>,
}

fn parse_topic_spec(text: &str) -> Result<TopicSpec, String> {
    let (topic, partitions) = match text.split_once(':') {
        None => (text, None),
        Some((topic, list)) => {
            let partitions = list
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .map_err(|_| format!("bad partition '{p}' in '{text}'"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (topic, Some(partitions))
        }
    };
    if topic.is_empty() {
        return Err(format!("missing topic name in '{text}'"));
    }
    Ok(TopicSpec {
        topic: topic.to_string(),
        partitions,
    })
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.sss][Z]` (UTC) into milliseconds since the Unix epoch.
fn parse_datetime_millis(text: &str) -> Result<i64, String> {
    let bad = || format!("expected YYYY-MM-DDTHH:MM:SS[.sss] (UTC), got '{text}'");
    let trimmed = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = trimmed.split_once('T').ok_or_else(bad)?;
    let date_parts: Vec<&str> = date.split('-').collect();
    let [year, month, day] = date_parts.as_slice() else {
        return Err(bad());
    };
    let (clock, millis) = match time.split_once('.') {
        Some((clock, fraction)) => {
            if fraction.is_empty() || fraction.len() > 3 {
                return Err(bad());
            }
            let padded = format!("{fraction:0<3}");
            (clock, padded.parse::<i64>().map_err(|_| bad())?)
        }
        None => (time, 0),
    };
    let clock_parts: Vec<&str> = clock.split(':').collect();
    let [hour, minute, second] = clock_parts.as_slice() else {
        return Err(bad());
    };
    let number = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let (year, month, day) = (number(year)?, number(month)?, number(day)?);
    let (hour, minute, second) = (number(hour)?, number(minute)?, number(second)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..60).contains(&second)
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    Ok((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Runs `strom groups ...`.
pub async fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let client = args.client;
    match args.command {
        GroupsCommand::List { state } => {
            let groups = list_groups(&client)?;
            let rows: Vec<Vec<String>> = groups
                .iter()
                .filter(|group| {
                    state
                        .as_ref()
                        .is_none_or(|wanted| group.state.eq_ignore_ascii_case(wanted))
                })
                .map(|group| {
                    vec![
                        group.id.clone(),
                        group.state.clone(),
                        or_dash(&group.protocol_type),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows)
            );
        }
        GroupsCommand::Describe { group } => {
            print!("{}", describe(&client, &group)?);
        }
        GroupsCommand::Delete { groups } => delete(&client, &groups).await?,
        GroupsCommand::ResetOffsets(reset) => reset_offsets(&client, &reset)?,
    }
    Ok(())
}

/// A group as the brokers describe it.
#[derive(Debug, Clone, PartialEq)]
struct GroupSummary {
    id: String,
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberSummary>,
}

/// A group member and the partitions assigned to it.
#[derive(Debug, Clone, PartialEq)]
struct MemberSummary {
    member_id: String,
    client_id: String,
    host: String,
    assignment: Vec<(String, i32)>,
}

impl GroupSummary {
    fn from_info(info: &GroupInfo) -> GroupSummary {
        let consumer_protocol = info.protocol_type() == "consumer";
        GroupSummary {
            id: info.name().to_string(),
            state: info.state().to_string(),
            protocol_type: info.protocol_type().to_string(),
            protocol: info.protocol().to_string(),
            members: info
                .members()
                .iter()
                .map(|member| MemberSummary {
                    member_id: member.id().to_string(),
                    client_id: member.client_id().to_string(),
                    host: member.client_host().to_string(),
                    // Only the "consumer" protocol type has a known assignment format; a
                    // malformed one is shown as no partitions rather than failing the listing.
                    assignment: match member.assignment() {
                        Some(bytes) if consumer_protocol => {
                            decode_assignment(bytes).unwrap_or_default()
                        }
                        _ => Vec::new(),
                    },
                })
                .collect(),
        }
    }

    /// Whether offsets may be committed from outside the group (no active members).
    fn is_inactive(&self) -> bool {
        self.state == "Empty" || self.state == "Dead"
    }
}

/// Decodes a `ConsumerProtocolAssignment` (version in its first two bytes) into sorted
/// (topic, partition) pairs.
fn decode_assignment(bytes: &[u8]) -> anyhow::Result<Vec<(String, i32)>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut buf = bytes.to_vec().into();
    let version = get_i16(&mut buf).context("truncated consumer assignment")?;
    let assignment = ConsumerProtocolAssignment::decode(&mut buf, version)
        .with_context(|| format!("malformed consumer assignment (version {version})"))?;
    let mut pairs: Vec<(String, i32)> = assignment
        .assigned_partitions
        .into_iter()
        .flat_map(|topic| {
            let name = topic.topic;
            topic
                .partitions
                .into_iter()
                .map(move |partition| (name.clone(), partition))
        })
        .collect();
    pairs.sort();
    Ok(pairs)
}

/// Every group on the cluster (ListGroups on every broker, then DescribeGroups), sorted by id.
fn list_groups(client: &ClientArgs) -> anyhow::Result<Vec<GroupSummary>> {
    let metadata_client = client.metadata_client(false)?;
    // Fail fast (within seconds) when the cluster is unreachable.
    metadata_client.fetch(None)?;
    let (consumer, context) = group_consumer(client, None)?;
    let list = consumer
        .fetch_group_list(None, GROUP_TIMEOUT)
        .map_err(|error| client.unreachable(&context, &error))
        .context("cannot list groups")?;
    let mut groups: Vec<GroupSummary> = list.groups().iter().map(GroupSummary::from_info).collect();
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(groups)
}

/// One group's description; a group the brokers do not know is reported as "Dead" with no
/// members, as Kafka's DescribeGroups does.
fn describe_group(
    client: &ClientArgs,
    consumer: &BaseConsumer<CliContext>,
    context: &CliContext,
    group: &str,
) -> anyhow::Result<GroupSummary> {
    let list = consumer
        .fetch_group_list(Some(group), GROUP_TIMEOUT)
        .map_err(|error| client.unreachable(context, &error))
        .with_context(|| format!("cannot describe group '{group}'"))?;
    Ok(list
        .groups()
        .iter()
        .find(|info| info.name() == group)
        .map(GroupSummary::from_info)
        .unwrap_or_else(|| GroupSummary {
            id: group.to_string(),
            state: "Dead".to_string(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        }))
}

/// A consumer that carries `group` as its group.id (for OffsetFetch / OffsetCommit) but never
/// subscribes, so it never joins the group. Without a group, a throwaway id is used.
fn group_consumer(
    client: &ClientArgs,
    group: Option<&str>,
) -> anyhow::Result<(BaseConsumer<CliContext>, CliContext)> {
    let mut config = client.client_config();
    config
        .set(
            "group.id",
            group.map_or_else(
                || crate::client::throwaway_group_id("strom-groups"),
                str::to_string,
            ),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("allow.auto.create.topics", "false");
    create_client(&config)
}

/// One row of the offsets table.
#[derive(Debug, Clone, PartialEq)]
struct PartitionLag {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    log_end: Option<i64>,
    member: Option<MemberSummary>,
}

impl PartitionLag {
    fn lag(&self) -> Option<i64> {
        Some((self.log_end? - self.committed?).max(0))
    }
}

/// The `describe` report: a summary line, the members and the offsets table.
fn describe(client: &ClientArgs, group: &str) -> anyhow::Result<String> {
    let metadata = client.fetch_metadata(None, false)?;
    let (consumer, context) = group_consumer(client, Some(group))?;
    let summary = describe_group(client, &consumer, &context, group)?;

    // Committed offsets of every partition of every non-internal topic (OffsetFetch needs the
    // partitions listed), plus whatever the members are assigned.
    let mut partitions: BTreeMap<(String, i32), Option<MemberSummary>> = BTreeMap::new();
    for member in &summary.members {
        for (topic, partition) in &member.assignment {
            partitions.insert((topic.clone(), *partition), Some(member.clone()));
        }
    }
    let mut request = TopicPartitionList::new();
    for topic in metadata.topics() {
        if topic.name().starts_with("__") || topic.error().is_some() {
            continue;
        }
        for partition in topic.partitions() {
            request.add_partition(topic.name(), partition.id());
        }
    }
    let committed = if request.count() == 0 {
        TopicPartitionList::new()
    } else {
        consumer
            .committed_offsets(request, GROUP_TIMEOUT)
            .map_err(|error| client.unreachable(&context, &error))
            .with_context(|| format!("cannot fetch the committed offsets of group '{group}'"))?
    };
    let mut committed_by_partition = BTreeMap::new();
    for element in committed.elements() {
        if let Offset::Offset(offset) = element.offset() {
            let key = (element.topic().to_string(), element.partition());
            committed_by_partition.insert(key.clone(), offset);
            partitions.entry(key).or_insert(None);
        }
    }

    let mut rows = Vec::new();
    for ((topic, partition), member) in partitions {
        // A partition that vanished (deleted topic) has no log end offset.
        let log_end = consumer
            .fetch_watermarks(&topic, partition, GROUP_TIMEOUT)
            .ok()
            .map(|(_, high)| high);
        rows.push(PartitionLag {
            committed: committed_by_partition
                .get(&(topic.clone(), partition))
                .copied(),
            topic,
            partition,
            log_end,
            member,
        });
    }
    Ok(render_description(&summary, &rows))
}

/// Formats the `describe` output.
fn render_description(summary: &GroupSummary, rows: &[PartitionLag]) -> String {
    let mut out = render_table(
        &["GROUP", "STATE", "PROTOCOL-TYPE", "PROTOCOL", "MEMBERS"],
        &[vec![
            summary.id.clone(),
            summary.state.clone(),
            or_dash(&summary.protocol_type),
            or_dash(&summary.protocol),
            summary.members.len().to_string(),
        ]],
    );
    out.push('\n');
    if summary.members.is_empty() {
        if summary.state == "Dead" && rows.is_empty() {
            out.push_str(&format!(
                "Consumer group '{}' does not exist.\n",
                summary.id
            ));
            return out;
        }
        out.push_str(&format!(
            "Consumer group '{}' has no active members.\n\n",
            summary.id
        ));
    } else {
        let member_rows: Vec<Vec<String>> = summary
            .members
            .iter()
            .map(|member| {
                vec![
                    summary.id.clone(),
                    member.member_id.clone(),
                    or_dash(&member.host),
                    or_dash(&member.client_id),
                    member.assignment.len().to_string(),
                    format_assignment(&member.assignment),
                ]
            })
            .collect();
        out.push_str(&render_table(
            &[
                "GROUP",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID",
                "#PARTITIONS",
                "ASSIGNMENT",
            ],
            &member_rows,
        ));
        out.push('\n');
    }
    let offset_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let dash = || "-".to_string();
            vec![
                summary.id.clone(),
                row.topic.clone(),
                row.partition.to_string(),
                row.committed.map_or_else(dash, |o| o.to_string()),
                row.log_end.map_or_else(dash, |o| o.to_string()),
                row.lag().map_or_else(dash, |o| o.to_string()),
                row.member
                    .as_ref()
                    .map_or_else(dash, |m| m.member_id.clone()),
                row.member.as_ref().map_or_else(dash, |m| or_dash(&m.host)),
                row.member
                    .as_ref()
                    .map_or_else(dash, |m| or_dash(&m.client_id)),
            ]
        })
        .collect();
    out.push_str(&render_table(
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        &offset_rows,
    ));
    out
}

/// `topic(0,1),other(2)` for a sorted assignment, `-` when empty.
fn format_assignment(assignment: &[(String, i32)]) -> String {
    if assignment.is_empty() {
        return "-".to_string();
    }
    let mut by_topic: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (topic, partition) in assignment {
        by_topic
            .entry(topic)
            .or_default()
            .push(partition.to_string());
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| format!("{topic}({})", partitions.join(",")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Deletes groups, reporting each; fails if any could not be deleted.
async fn delete(client: &ClientArgs, groups: &[String]) -> anyhow::Result<()> {
    client.fetch_metadata(None, false)?;
    let (admin, context): (AdminClient<CliContext>, _) = create_client(&client.client_config())?;
    let options = AdminOptions::new()
        .request_timeout(Some(GROUP_TIMEOUT))
        .operation_timeout(Some(GROUP_TIMEOUT));
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let results = admin
        .delete_groups(&names, &options)
        .await
        .map_err(|error| client.unreachable(&context, &error))?;
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(group) => println!("Deleted consumer group '{group}'."),
            Err((group, code)) => failures.push(delete_error_message(&group, code)),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{}", failures.join("; "))
    }
}

/// Explains a DeleteGroups error code.
fn delete_error_message(group: &str, code: RDKafkaErrorCode) -> String {
    match code {
        RDKafkaErrorCode::NonEmptyGroup => format!(
            "cannot delete consumer group '{group}': it has active members (stop its consumers first)"
        ),
        RDKafkaErrorCode::GroupIdNotFound => {
            format!("cannot delete consumer group '{group}': it does not exist")
        }
        RDKafkaErrorCode::InvalidGroupId => {
            format!("cannot delete consumer group '{group}': invalid group id")
        }
        other => format!("cannot delete consumer group '{group}': {other}"),
    }
}

/// One partition of a reset plan.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PartitionRange {
    partition: i32,
    log_start: i64,
    log_end: i64,
    committed: Option<i64>,
}

/// Computes (and with `--execute` commits) the new offsets of `reset-offsets`.
fn reset_offsets(client: &ClientArgs, reset: &ResetOffsetsArgs) -> anyhow::Result<()> {
    let group = reset.group.as_str();
    let metadata = client.fetch_metadata(None, false)?;
    let (consumer, context) = group_consumer(client, Some(group))?;
    let summary = describe_group(client, &consumer, &context, group)?;
    if reset.execute && !summary.is_inactive() {
        bail!(
            "cannot reset the offsets of consumer group '{group}': it is {} with {} active \
             member(s); offsets can only be reset when the group is inactive (Empty)",
            summary.state,
            summary.members.len()
        );
    }

    let mut targets: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for spec in &reset.topics {
        let topic = metadata
            .topics()
            .iter()
            .find(|topic| topic.name() == spec.topic)
            .ok_or_else(|| anyhow!("topic '{}' does not exist", spec.topic))?;
        if let Some(code) = topic.error() {
            bail!(topic_error_message(&spec.topic, code.into()));
        }
        let existing: BTreeSet<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        let wanted = match &spec.partitions {
            None => existing,
            Some(list) => {
                if let Some(missing) = list.iter().find(|p| !existing.contains(p)) {
                    bail!("topic '{}' has no partition {missing}", spec.topic);
                }
                list.iter().copied().collect()
            }
        };
        targets
            .entry(spec.topic.clone())
            .or_default()
            .extend(wanted);
    }

    let mut request = TopicPartitionList::new();
    for (topic, partitions) in &targets {
        for partition in partitions {
            request.add_partition(topic, *partition);
        }
    }
    let committed = consumer
        .committed_offsets(request, GROUP_TIMEOUT)
        .map_err(|error| client.unreachable(&context, &error))
        .with_context(|| format!("cannot fetch the committed offsets of group '{group}'"))?;

    let timestamp = reset.target.to_datetime.or(reset.target.to_timestamp);
    let mut plan = Vec::new();
    for (topic, partitions) in &targets {
        for &partition in partitions {
            let (log_start, log_end) = consumer
                .fetch_watermarks(topic, partition, GROUP_TIMEOUT)
                .map_err(|error| client.unreachable(&context, &error))
                .with_context(|| format!("cannot fetch the offsets of {topic}-{partition}"))?;
            let committed_offset = committed
                .find_partition(topic, partition)
                .and_then(|element| match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                });
            let range = PartitionRange {
                partition,
                log_start,
                log_end,
                committed: committed_offset,
            };
            let new_offset = match timestamp {
                Some(millis) => offset_for_time(&consumer, topic, partition, millis)
                    .map_err(|error| client.unreachable(&context, &error))
                    .with_context(|| {
                        format!("cannot look up offsets by time in {topic}-{partition}")
                    })?
                    .unwrap_or(log_end),
                None => target_offset(&reset.target, &range)
                    .with_context(|| format!("{topic}-{partition}"))?,
            };
            plan.push((topic.clone(), partition, new_offset));
        }
    }

    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|(topic, partition, offset)| {
            vec![
                group.to_string(),
                topic.clone(),
                partition.to_string(),
                offset.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], &rows)
    );
    if !reset.execute {
        eprintln!("Dry run: nothing was committed; add --execute to commit these offsets.");
        return Ok(());
    }
    let mut offsets = TopicPartitionList::new();
    for (topic, partition, offset) in &plan {
        offsets
            .add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .kafka_context("cannot build the offsets to commit")?;
    }
    consumer
        .commit(&offsets, CommitMode::Sync)
        .map_err(|error| anyhow!("cannot commit the new offsets of group '{group}': {error}"))?;
    // Read the offsets back so a commit the broker did not apply is reported, not assumed.
    let mut check = TopicPartitionList::new();
    for (topic, partition, _) in &plan {
        check.add_partition(topic, *partition);
    }
    let stored = consumer
        .committed_offsets(check, GROUP_TIMEOUT)
        .map_err(|error| client.unreachable(&context, &error))
        .context("cannot read back the committed offsets")?;
    for (topic, partition, offset) in &plan {
        let actual = stored
            .find_partition(topic, *partition)
            .map(|element| element.offset());
        if actual != Some(Offset::Offset(*offset)) {
            bail!(
                "the broker did not store offset {offset} for {topic}-{partition} of group \
                 '{group}' (it reports {actual:?})"
            );
        }
    }
    eprintln!("Committed the new offsets of consumer group '{group}'.");
    Ok(())
}

/// The new offset for a non-time target, within [log start, log end].
fn target_offset(target: &ResetTarget, range: &PartitionRange) -> anyhow::Result<i64> {
    let clamp = |offset: i64| offset.clamp(range.log_start, range.log_end.max(range.log_start));
    if target.to_earliest {
        Ok(range.log_start)
    } else if target.to_latest {
        Ok(range.log_end)
    } else if let Some(offset) = target.to_offset {
        Ok(clamp(offset))
    } else if let Some(shift) = target.shift_by {
        let committed = range.committed.ok_or_else(|| {
            anyhow!(
                "cannot shift partition {}: the group has no committed offset for it",
                range.partition
            )
        })?;
        Ok(clamp(committed.saturating_add(shift)))
    } else {
        bail!("no reset target given")
    }
}

/// The first offset with a timestamp at or after `millis`, or `None` when every record is
/// older.
fn offset_for_time(
    consumer: &BaseConsumer<CliContext>,
    topic: &str,
    partition: i32,
    millis: i64,
) -> Result<Option<i64>, rdkafka::error::KafkaError> {
    let mut query = TopicPartitionList::new();
    query.add_partition_offset(topic, partition, Offset::Offset(millis))?;
    let answer = consumer.offsets_for_times(query, GROUP_TIMEOUT)?;
    Ok(answer
        .find_partition(topic, partition)
        .and_then(|element| match element.offset() {
            Offset::Offset(offset) if offset >= 0 => Some(offset),
            _ => None,
        }))
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

/// Left-aligned columns separated by two spaces, one header line.
fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use strom_protocol::codec::{Encode, Encoder};
    use strom_protocol::messages::consumer_protocol_assignment::TopicPartition;

    use super::*;
    use crate::{Cli, Command};

    fn groups_command(argv: &[&str]) -> anyhow::Result<GroupsCommand> {
        let mut full = vec!["strom", "groups"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full)? {
            Cli {
                command: Command::Groups(args),
            } => Ok(args.command),
            other => panic!("unexpected command {other:?}"),
        }
    }

    #[test]
    fn reset_offsets_needs_exactly_one_target() {
        assert!(groups_command(&["reset-offsets", "g", "--topic", "t"]).is_err());
        assert!(groups_command(&[
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--to-latest"
        ])
        .is_err());
        let GroupsCommand::ResetOffsets(reset) = groups_command(&[
            "reset-offsets",
            "g",
            "--topic",
            "t:0,2",
            "--shift-by",
            "-5",
            "--execute",
        ])
        .unwrap() else {
            panic!("expected reset-offsets");
        };
        assert_eq!(reset.target.shift_by, Some(-5));
        assert!(reset.execute);
        assert_eq!(
            reset.topics,
            vec![TopicSpec {
                topic: "t".to_string(),
                partitions: Some(vec![0, 2])
            }]
        );
    }

    #[test]
    fn list_state_is_validated_case_insensitively() {
        assert!(groups_command(&["list", "--state", "stable"]).is_ok());
        assert!(groups_command(&["list", "--state", "sleepy"]).is_err());
        assert!(groups_command(&["delete"]).is_err());
    }

    #[test]
    fn datetimes_are_parsed_as_utc() {
        assert_eq!(parse_datetime_millis("1970-01-01T00:00:00"), Ok(0));
        assert_eq!(
            parse_datetime_millis("2024-02-29T12:34:56.789Z"),
            Ok(1_709_210_096_789)
        );
        assert_eq!(
            parse_datetime_millis("2000-01-01T00:00:00.5"),
            Ok(946_684_800_500)
        );
        assert!(parse_datetime_millis("2024-13-01T00:00:00").is_err());
        assert!(parse_datetime_millis("yesterday").is_err());
    }

    #[test]
    fn targets_stay_within_the_log() {
        let range = PartitionRange {
            partition: 0,
            log_start: 10,
            log_end: 20,
            committed: Some(15),
        };
        let target = |f: fn(&mut ResetTarget)| {
            let mut target = ResetTarget {
                to_earliest: false,
                to_latest: false,
                to_datetime: None,
                to_timestamp: None,
                to_offset: None,
                shift_by: None,
            };
            f(&mut target);
            target
        };
        assert_eq!(
            target_offset(&target(|t| t.to_earliest = true), &range).unwrap(),
            10
        );
        assert_eq!(
            target_offset(&target(|t| t.to_latest = true), &range).unwrap(),
            20
        );
        assert_eq!(
            target_offset(&target(|t| t.to_offset = Some(3)), &range).unwrap(),
            10
        );
        assert_eq!(
            target_offset(&target(|t| t.to_offset = Some(99)), &range).unwrap(),
            20
        );
        assert_eq!(
            target_offset(&target(|t| t.shift_by = Some(-2)), &range).unwrap(),
            13
        );
        assert_eq!(
            target_offset(&target(|t| t.shift_by = Some(9)), &range).unwrap(),
            20
        );
        let uncommitted = PartitionRange {
            committed: None,
            ..range
        };
        assert!(target_offset(&target(|t| t.shift_by = Some(1)), &uncommitted).is_err());
    }

    #[test]
    fn assignments_decode_at_every_version() {
        let assignment = ConsumerProtocolAssignment {
            assigned_partitions: vec![
                TopicPartition {
                    topic: "b".to_string(),
                    partitions: vec![1, 0],
                },
                TopicPartition {
                    topic: "a".to_string(),
                    partitions: vec![2],
                },
            ],
            user_data: None,
        };
        for version in 0..=3i16 {
            let mut encoder = Encoder::new();
            encoder.put_i16(version);
            assignment.encode(&mut encoder, version);
            let bytes = encoder.into_bytes();
            assert_eq!(
                decode_assignment(&bytes).unwrap(),
                vec![
                    ("a".to_string(), 2),
                    ("b".to_string(), 0),
                    ("b".to_string(), 1)
                ]
            );
        }
        assert!(decode_assignment(&[]).unwrap().is_empty());
        assert!(decode_assignment(&[0, 0, 0]).is_err());
    }

    #[test]
    fn tables_align_columns() {
        let table = render_table(
            &["A", "LONG-HEADER"],
            &[vec!["value".to_string(), "x".to_string()]],
        );
        assert_eq!(table, "A      LONG-HEADER\nvalue  x\n");
        assert_eq!(
            format_assignment(&[("t".to_string(), 0), ("t".to_string(), 1)]),
            "t(0,1)"
        );
    }

    #[test]
    fn lag_needs_both_offsets() {
        let row = PartitionLag {
            topic: "t".to_string(),
            partition: 0,
            committed: Some(3),
            log_end: Some(10),
            member: None,
        };
        assert_eq!(row.lag(), Some(7));
        assert_eq!(
            PartitionLag {
                committed: None,
                ..row
            }
            .lag(),
            None
        );
    }
}
