//! `strom produce`: reads lines from stdin and produces one record per line (optionally
//! `key<SEP>value`), like `kafka-console-producer`. Every record's delivery is awaited and
//! failures are reported with their line number.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::client::{create_client, parse_key_value, CliContext, ClientArgs};

/// How many records may be awaiting delivery before reading more input.
const MAX_IN_FLIGHT: usize = 1000;

/// Options of `strom produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Topic to produce to.
    pub topic: String,
    /// Split each line at the first SEP into key and value (lines without SEP are an error).
    #[arg(long)]
    pub key_separator: Option<String>,
    /// Header `key=value` added to every record (repeatable).
    #[arg(long = "header", value_parser = parse_key_value)]
    pub headers: Vec<(String, String)>,
    /// Produce to this partition instead of letting the partitioner choose.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Acknowledgements required: all (-1), 1 or 0.
    #[arg(long, default_value = "all", value_parser = ["all", "-1", "0", "1"])]
    pub acks: String,
    /// Compression codec.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    pub compression: String,
    /// Give up on a record not delivered within this time.
    #[arg(long, default_value_t = 30_000)]
    pub delivery_timeout_ms: u64,
}

/// One line of input turned into a record.
#[derive(Debug, PartialEq, Eq)]
struct LineRecord<'a> {
    key: Option<&'a str>,
    value: &'a str,
}

/// Splits a line into key and value according to the separator.
fn split_line<'a>(
    line: &'a str,
    separator: Option<&str>,
    line_number: u64,
) -> anyhow::Result<LineRecord<'a>> {
    match separator {
        None => Ok(LineRecord {
            key: None,
            value: line,
        }),
        Some(separator) => line
            .split_once(separator)
            .map(|(key, value)| LineRecord {
                key: Some(key),
                value,
            })
            .ok_or_else(|| anyhow!("no key separator found on line {line_number}: '{line}'")),
    }
}

/// Runs `strom produce`.
pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let mut config = args.client.client_config();
    config
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("message.timeout.ms", args.delivery_timeout_ms.to_string())
        .set("linger.ms", "5");
    let (producer, context): (FutureProducer<CliContext>, _) = create_client(&config)?;
    // Fails early, naming the topic or partition, if either is missing.
    args.client
        .topic_partitions(&args.topic, true, args.partition)?;

    let headers = args
        .headers
        .iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut in_flight: VecDeque<(u64, DeliveryFuture)> = VecDeque::new();
    let mut failures = 0u64;
    let mut line_number = 0u64;
    while let Some(line) = lines.next_line().await.context("cannot read stdin")? {
        line_number += 1;
        let record = match split_line(&line, args.key_separator.as_deref(), line_number) {
            Ok(record) => record,
            Err(error) => {
                // Deliver what was already sent before giving up, like kafka-console-producer.
                drain(&args.client, &context, &mut in_flight).await;
                return Err(error);
            }
        };
        let mut future_record = FutureRecord::to(&args.topic)
            .payload(record.value)
            .headers(headers.clone());
        if let Some(key) = record.key {
            future_record = future_record.key(key);
        }
        if let Some(partition) = args.partition {
            future_record = future_record.partition(partition);
        }
        loop {
            match producer.send_result(future_record) {
                Ok(delivery) => {
                    in_flight.push_back((line_number, delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    future_record = returned;
                    match in_flight.pop_front() {
                        Some((number, delivery)) => {
                            failures += report(&args.client, &context, number, delivery.await)
                        }
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((error, _)) => bail!("cannot send line {line_number}: {error}"),
            }
        }
        while in_flight.len() >= MAX_IN_FLIGHT {
            if let Some((number, delivery)) = in_flight.pop_front() {
                failures += report(&args.client, &context, number, delivery.await);
            }
        }
    }
    failures += drain(&args.client, &context, &mut in_flight).await;
    if failures > 0 {
        bail!("{failures} of {line_number} records were not delivered");
    }
    Ok(())
}

/// Awaits every in-flight delivery, reporting failures; returns how many failed.
async fn drain(
    client: &ClientArgs,
    context: &CliContext,
    in_flight: &mut VecDeque<(u64, DeliveryFuture)>,
) -> u64 {
    let mut failures = 0;
    while let Some((number, delivery)) = in_flight.pop_front() {
        failures += report(client, context, number, delivery.await);
    }
    failures
}

/// Prints a delivery failure for `line_number`; returns 1 for a failure, 0 for success.
fn report(
    client: &ClientArgs,
    context: &CliContext,
    line_number: u64,
    outcome: <DeliveryFuture as std::future::Future>::Output,
) -> u64 {
    match outcome {
        Ok(Ok(_)) => 0,
        Ok(Err((error, _))) => {
            let reason = match error.rdkafka_error_code() {
                Some(RDKafkaErrorCode::MessageTimedOut) => client.unreachable(context, &error),
                _ => anyhow!("{error}"),
            };
            eprintln!("error: line {line_number} not delivered: {reason:#}");
            1
        }
        Err(_) => {
            eprintln!("error: line {line_number} not delivered: producer closed");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    #[test]
    fn lines_split_at_first_separator() {
        assert_eq!(
            split_line("k:v:w", Some(":"), 1).unwrap(),
            LineRecord {
                key: Some("k"),
                value: "v:w"
            }
        );
        assert_eq!(
            split_line("plain", None, 1).unwrap(),
            LineRecord {
                key: None,
                value: "plain"
            }
        );
        let message = split_line("nokey", Some("\t"), 7).unwrap_err().to_string();
        assert!(message.contains("line 7"), "{message}");
    }

    #[test]
    fn parses_produce_options() {
        let cli = Cli::try_parse_from([
            "strom",
            "produce",
            "events",
            "--key-separator",
            ":",
            "--header",
            "a=1",
            "--header",
            "b=2",
            "--partition",
            "2",
            "--acks",
            "1",
            "--compression",
            "zstd",
        ])
        .unwrap();
        let Command::Produce(args) = cli.command else {
            panic!("expected produce");
        };
        assert_eq!(args.topic, "events");
        assert_eq!(args.key_separator.as_deref(), Some(":"));
        assert_eq!(args.headers.len(), 2);
        assert_eq!(args.partition, Some(2));
        assert_eq!(args.acks, "1");
        assert_eq!(args.compression, "zstd");
    }

    #[test]
    fn rejects_unknown_codec_and_acks() {
        assert!(Cli::try_parse_from(["strom", "produce", "t", "--compression", "brotli"]).is_err());
        assert!(Cli::try_parse_from(["strom", "produce", "t", "--acks", "2"]).is_err());
    }
}
