//! `strom consume`: prints records of a topic, like `kafka-console-consumer`. Without `--group`
//! the partitions are assigned directly (no consumer group); with `--group` the topic is
//! subscribed through the group protocol (or, with `--partition`, assigned and committed under
//! that group). Exits after `--max-messages` records or `--timeout-ms` without a record.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, Timestamp, TopicPartitionList};

use crate::client::{
    create_client, throwaway_group_id, CliContext, ClientArgs, KafkaResultExt, METADATA_TIMEOUT,
};

/// Options of `strom consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Topic to consume.
    pub topic: String,
    /// Start at the earliest available record (default: only new records).
    #[arg(long, group = "start")]
    pub from_beginning: bool,
    /// Start at this offset, or `earliest` / `latest`.
    #[arg(long, group = "start", value_parser = parse_start_offset)]
    pub offset: Option<Offset>,
    /// Start at the first record whose timestamp is at least this (milliseconds since epoch).
    #[arg(long, group = "start")]
    pub timestamp: Option<i64>,
    /// Only consume this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Exit after this many records.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Consumer group (commits offsets); default: no group, partitions assigned directly.
    #[arg(long)]
    pub group: Option<String>,
    /// Output template, one line per record: %t topic, %p partition, %o offset, %T timestamp,
    /// %k key, %v value, %h headers, %S value size, %% percent; `\t` and `\n` are escapes.
    #[arg(long, conflicts_with_all = ["print_key", "print_headers", "print_offset", "print_timestamp", "print_partition"])]
    pub format: Option<String>,
    /// Print the key before the value.
    #[arg(long)]
    pub print_key: bool,
    /// Print the headers.
    #[arg(long)]
    pub print_headers: bool,
    /// Print the offset.
    #[arg(long)]
    pub print_offset: bool,
    /// Print the timestamp and its type.
    #[arg(long)]
    pub print_timestamp: bool,
    /// Print the partition.
    #[arg(long)]
    pub print_partition: bool,
    /// Exit when no record arrives for this many milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
}

/// Parses `--offset`: a non-negative number, `earliest` or `latest`.
fn parse_start_offset(text: &str) -> Result<Offset, String> {
    match text {
        "earliest" => Ok(Offset::Beginning),
        "latest" => Ok(Offset::End),
        number => match number.parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(Offset::Offset(offset)),
            _ => Err(format!(
                "expected a non-negative offset, earliest or latest, got '{text}'"
            )),
        },
    }
}

/// How records are rendered.
#[derive(Debug)]
enum OutputFormat {
    /// A user template (see `--format`).
    Template(Vec<TemplatePart>),
    /// Kafka's default formatter: selected fields then the value, tab separated.
    Fields {
        timestamp: bool,
        partition: bool,
        offset: bool,
        headers: bool,
        key: bool,
    },
}

/// A piece of a `--format` template.
#[derive(Debug, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    Value,
    Headers,
    ValueSize,
}

/// Compiles a `--format` template.
fn parse_template(template: &str) -> anyhow::Result<Vec<TemplatePart>> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        let placeholder = match c {
            '%' => match chars.next() {
                Some('t') => TemplatePart::Topic,
                Some('p') => TemplatePart::Partition,
                Some('o') => TemplatePart::Offset,
                Some('T') => TemplatePart::Timestamp,
                Some('k') => TemplatePart::Key,
                Some('v') => TemplatePart::Value,
                Some('h') => TemplatePart::Headers,
                Some('S') => TemplatePart::ValueSize,
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some(other) => bail!("unknown placeholder %{other} in --format"),
                None => bail!("--format ends with a lone %"),
            },
            '\\' => {
                match chars.next() {
                    Some('t') => literal.push('\t'),
                    Some('n') => literal.push('\n'),
                    Some(other) => literal.push(other),
                    None => literal.push('\\'),
                }
                continue;
            }
            other => {
                literal.push(other);
                continue;
            }
        };
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
        }
        parts.push(placeholder);
    }
    if !literal.is_empty() {
        parts.push(TemplatePart::Literal(literal));
    }
    Ok(parts)
}

/// The fields of a record that the formatter needs.
struct RecordView<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Timestamp,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(String, Option<String>)>,
}

impl<'a> RecordView<'a> {
    fn of(message: &'a BorrowedMessage<'a>) -> RecordView<'a> {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        (
                            header.key.to_string(),
                            header
                                .value
                                .map(|v| String::from_utf8_lossy(v).into_owned()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        RecordView {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp(),
            key: message.key(),
            value: message.payload(),
            headers,
        }
    }
}

fn text_or_null(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(
        || "null".to_string(),
        |bytes| String::from_utf8_lossy(bytes).into_owned(),
    )
}

fn headers_text(headers: &[(String, Option<String>)]) -> String {
    headers
        .iter()
        .map(|(key, value)| format!("{key}:{}", value.as_deref().unwrap_or("null")))
        .collect::<Vec<_>>()
        .join(",")
}

impl OutputFormat {
    fn render(&self, record: &RecordView<'_>) -> String {
        match self {
            OutputFormat::Template(parts) => parts
                .iter()
                .map(|part| match part {
                    TemplatePart::Literal(text) => text.clone(),
                    TemplatePart::Topic => record.topic.to_string(),
                    TemplatePart::Partition => record.partition.to_string(),
                    TemplatePart::Offset => record.offset.to_string(),
                    TemplatePart::Timestamp => {
                        record.timestamp.to_millis().unwrap_or(-1).to_string()
                    }
                    TemplatePart::Key => text_or_null(record.key),
                    TemplatePart::Value => text_or_null(record.value),
                    TemplatePart::Headers => headers_text(&record.headers),
                    TemplatePart::ValueSize => {
                        record.value.map_or(-1, |v| v.len() as i64).to_string()
                    }
                })
                .collect(),
            OutputFormat::Fields {
                timestamp,
                partition,
                offset,
                headers,
                key,
            } => {
                let mut fields = Vec::new();
                if *timestamp {
                    fields.push(match record.timestamp {
                        Timestamp::CreateTime(ms) => format!("CreateTime:{ms}"),
                        Timestamp::LogAppendTime(ms) => format!("LogAppendTime:{ms}"),
                        Timestamp::NotAvailable => "NO_TIMESTAMP".to_string(),
                    });
                }
                if *partition {
                    fields.push(format!("Partition:{}", record.partition));
                }
                if *offset {
                    fields.push(format!("Offset:{}", record.offset));
                }
                if *headers {
                    fields.push(if record.headers.is_empty() {
                        "NO_HEADERS".to_string()
                    } else {
                        headers_text(&record.headers)
                    });
                }
                if *key {
                    fields.push(text_or_null(record.key));
                }
                fields.push(text_or_null(record.value));
                fields.join("\t")
            }
        }
    }
}

impl ConsumeArgs {
    fn output_format(&self) -> anyhow::Result<OutputFormat> {
        Ok(match &self.format {
            Some(template) => OutputFormat::Template(parse_template(template)?),
            None => OutputFormat::Fields {
                timestamp: self.print_timestamp,
                partition: self.print_partition,
                offset: self.print_offset,
                headers: self.print_headers,
                key: self.print_key,
            },
        })
    }

    /// The position to start each assigned partition at (before timestamp lookup).
    fn start_offset(&self) -> Offset {
        if self.from_beginning {
            Offset::Beginning
        } else if let Some(offset) = self.offset {
            offset
        } else if self.group.is_some() {
            Offset::Stored
        } else {
            Offset::End
        }
    }
}

/// Runs `strom consume`.
pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let format = args.output_format()?;
    let subscribe = args.group.is_some() && args.partition.is_none();
    if subscribe && (args.offset.is_some() || args.timestamp.is_some()) {
        bail!(
            "--offset and --timestamp need assigned partitions: give --partition or drop --group"
        );
    }
    let mut config = args.client.client_config();
    config.set("enable.partition.eof", "false").set(
        "auto.offset.reset",
        if args.from_beginning {
            "earliest"
        } else {
            "latest"
        },
    );
    match &args.group {
        Some(group) => {
            config
                .set("group.id", group)
                .set("enable.auto.commit", "true");
        }
        None => {
            // librdkafka needs a group.id even to assign partitions; like
            // kafka-console-consumer use a throwaway one, and never commit under it.
            config
                .set("group.id", throwaway_group_id("strom-console-consumer"))
                .set("enable.auto.commit", "false");
        }
    }
    let (consumer, context): (StreamConsumer<CliContext>, _) = create_client(&config)?;
    let partitions = args
        .client
        .topic_partitions(&args.topic, false, args.partition)?;
    if subscribe {
        consumer
            .subscribe(&[&args.topic])
            .kafka_context("cannot subscribe")?;
    } else {
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            let start = match args.timestamp {
                Some(timestamp) => Offset::Offset(timestamp),
                None => args.start_offset(),
            };
            assignment
                .add_partition_offset(&args.topic, partition, start)
                .kafka_context("cannot build the partition assignment")?;
        }
        if args.timestamp.is_some() {
            assignment = consumer
                .offsets_for_times(assignment, METADATA_TIMEOUT)
                .map_err(|error| args.client.unreachable(&context, &error))?;
        }
        consumer
            .assign(&assignment)
            .kafka_context("cannot assign partitions")?;
    }

    let consumed = consume_loop(&args, &consumer, &format).await?;
    if args.group.is_some() && consumed > 0 {
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            eprintln!("warning: cannot commit offsets: {error}");
        }
    }
    eprintln!("Processed a total of {consumed} messages");
    Ok(())
}

/// Receives and prints records until the limit, the idle timeout, Ctrl-C or a closed stdout.
async fn consume_loop(
    args: &ConsumeArgs,
    consumer: &StreamConsumer<CliContext>,
    format: &OutputFormat,
) -> anyhow::Result<u64> {
    let mut consumed = 0u64;
    let mut stdout = std::io::stdout();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while args.max_messages.is_none_or(|max| consumed < max) {
        let next = async {
            match args.timeout_ms {
                Some(ms) => tokio::time::timeout(Duration::from_millis(ms), consumer.recv())
                    .await
                    .ok(),
                None => Some(consumer.recv().await),
            }
        };
        let received = tokio::select! {
            received = next => received,
            _ = &mut interrupted => break,
        };
        let Some(received) = received else {
            break; // idle timeout
        };
        match received {
            Ok(message) => {
                let line = format.render(&RecordView::of(&message));
                if let Err(error) = writeln!(stdout, "{line}") {
                    if error.kind() == std::io::ErrorKind::BrokenPipe {
                        break;
                    }
                    return Err(error).context("cannot write to stdout");
                }
                consumed += 1;
            }
            Err(error) => eprintln!("warning: {error}"),
        }
    }
    stdout.flush().ok();
    Ok(consumed)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn consume_args(argv: &[&str]) -> anyhow::Result<ConsumeArgs> {
        let mut full = vec!["strom", "consume"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full)? {
            Cli {
                command: Command::Consume(args),
            } => Ok(args),
            other => panic!("unexpected command {other:?}"),
        }
    }

    fn sample() -> RecordView<'static> {
        RecordView {
            topic: "t",
            partition: 2,
            offset: 41,
            timestamp: Timestamp::CreateTime(1000),
            key: Some(b"k"),
            value: Some(b"hello"),
            headers: vec![("h".to_string(), Some("1".to_string()))],
        }
    }

    #[test]
    fn start_positions() {
        let args = consume_args(&["t", "--from-beginning"]).unwrap();
        assert_eq!(args.start_offset(), Offset::Beginning);
        let args = consume_args(&["t", "--offset", "5", "--partition", "0"]).unwrap();
        assert_eq!(args.start_offset(), Offset::Offset(5));
        let args = consume_args(&["t", "--offset", "earliest"]).unwrap();
        assert_eq!(args.start_offset(), Offset::Beginning);
        let args = consume_args(&["t"]).unwrap();
        assert_eq!(args.start_offset(), Offset::End);
        let args = consume_args(&["t", "--group", "g"]).unwrap();
        assert_eq!(args.start_offset(), Offset::Stored);
        assert!(consume_args(&["t", "--from-beginning", "--offset", "3"]).is_err());
        assert!(consume_args(&["t", "--offset", "-3"]).is_err());
        assert!(consume_args(&["t", "--timestamp", "5", "--from-beginning"]).is_err());
    }

    #[test]
    fn limits_and_timeouts() {
        let args = consume_args(&[
            "t",
            "--max-messages",
            "10",
            "--timeout-ms",
            "500",
            "--partition",
            "1",
        ])
        .unwrap();
        assert_eq!(args.max_messages, Some(10));
        assert_eq!(args.timeout_ms, Some(500));
        assert_eq!(args.partition, Some(1));
    }

    #[test]
    fn format_conflicts_with_print_flags() {
        assert!(consume_args(&["t", "--format", "%v", "--print-key"]).is_err());
    }

    #[test]
    fn template_rendering() {
        let format = OutputFormat::Template(
            parse_template("%t/%p@%o %T [%k] %v (%S) %h 100%%\\tend").unwrap(),
        );
        assert_eq!(
            format.render(&sample()),
            "t/2@41 1000 [k] hello (5) h:1 100%\tend"
        );
        assert!(parse_template("%x").is_err());
        assert!(parse_template("abc%").is_err());
    }

    #[test]
    fn default_formatter_matches_kafka_layout() {
        let args = consume_args(&[
            "t",
            "--print-key",
            "--print-offset",
            "--print-timestamp",
            "--print-headers",
            "--print-partition",
        ])
        .unwrap();
        let format = args.output_format().unwrap();
        assert_eq!(
            format.render(&sample()),
            "CreateTime:1000\tPartition:2\tOffset:41\th:1\tk\thello"
        );
        let plain = consume_args(&["t"]).unwrap().output_format().unwrap();
        let mut record = sample();
        record.value = None;
        assert_eq!(plain.render(&record), "null");
    }
}
