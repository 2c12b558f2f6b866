//! `strom bench`: throughput and latency measurements over the Kafka protocol.
//!
//! * `produce`: N records of S bytes with acks=1 and batching tuned for throughput; prints MB/s
//!   (MB = 2^20 bytes, like Kafka's perf tools) and records/s.
//! * `consume`: reads a topic from the start with large fetches; prints MB/s and records/s.
//! * `latency`: produces at a fixed rate with acks=all and records each record's delivery
//!   latency (send -> delivery report) in an HDR histogram; with `--end-to-end` a consumer in
//!   the same process also measures send -> consumed, using a send time carried in the payload.
//!   With `--fsync-load-topic T` another producer writes to topic T, created with
//!   `flush.messages=1` (an fsync before every acknowledgement), at `--fsync-load-rate` records
//!   per second, each sent alone, for the whole measurement: the latency of the measured topic
//!   then shows whether one partition's fsyncs hold up appends to another.
//! * `rebalance`: a consumer group of N members (threads of this process) over a topic of P
//!   partitions; measures the time from a member joining, leaving, or dying (a `strom consume`
//!   child process killed with SIGKILL, which never sends LeaveGroup) until the group is stable
//!   again, i.e. every partition is assigned, once, evenly across the live members.
//! * `failover`: starts its own 3-node cluster and measures kill -9 of the active controller ->
//!   first CreateTopics committed, and CreateTopics -> every node serving the topic
//!   ([`crate::failover_bench`]).
//!
//! Output lines look like `produce: 1000000 records, 1024 B, 612.3 MB/s, 598000 rec/s`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::client::{
    create_client, throwaway_group_id, topic_error_message, CliContext, ClientArgs, KafkaResultExt,
    METADATA_TIMEOUT,
};

/// Bytes in the "MB" of the MB/s figures.
const BYTES_PER_MB: f64 = 1024.0 * 1024.0;
/// A benchmark gives up when no record arrives (or is delivered) for this long.
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// Largest latency the histograms track, in microseconds (longer ones saturate).
const MAX_LATENCY_MICROS: u64 = 60_000_000;

/// Options of `strom bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The `strom bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Producer throughput.
    Produce(ProduceBench),
    /// Consumer throughput (reads what is in the topic).
    Consume(ConsumeBench),
    /// Per-record latency at a fixed rate.
    Latency(LatencyBench),
    /// Time for a consumer group to become stable again after a member joins, leaves or dies.
    Rebalance(RebalanceBench),
    /// Controller failover and metadata propagation, on a 3-node cluster started for the run.
    Failover(crate::failover_bench::FailoverBench),
}

/// Options of `strom bench produce`.
#[derive(Debug, Clone, Args)]
pub struct ProduceBench {
    /// Topic (created with --partitions if missing).
    #[arg(long, default_value = "strom-bench")]
    pub topic: String,
    /// Partitions of the topic if it has to be created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Number of records.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Acknowledgements required.
    #[arg(long, default_value = "1", value_parser = ["all", "-1", "0", "1"])]
    pub acks: String,
    /// librdkafka linger.ms.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// librdkafka batch.size in bytes.
    #[arg(long, default_value_t = 1_048_576)]
    pub batch_size: u64,
    /// Compression codec.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    pub compression: String,
}

/// Options of `strom bench consume`.
#[derive(Debug, Clone, Args)]
pub struct ConsumeBench {
    /// Topic to read from its start.
    #[arg(long, default_value = "strom-bench")]
    pub topic: String,
    /// Stop after this many records (default: everything present when the run starts).
    #[arg(long)]
    pub records: Option<u64>,
    /// librdkafka fetch.max.bytes (librdkafka's default).
    #[arg(long, default_value_t = 52_428_800)]
    pub fetch_max_bytes: u64,
    /// librdkafka max.partition.fetch.bytes (librdkafka's default: what consumers get unless
    /// they raise it).
    #[arg(long, default_value_t = 1_048_576)]
    pub partition_fetch_max_bytes: u64,
}

/// Options of `strom bench latency`.
#[derive(Debug, Clone, Args)]
pub struct LatencyBench {
    /// Topic (created with --partitions if missing).
    #[arg(long, default_value = "strom-bench-latency")]
    pub topic: String,
    /// Partitions of the topic if it has to be created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Number of records.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Target send rate in records per second.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: u64,
    /// Value size in bytes (at least 8: the payload carries the send time).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(8..))]
    pub record_size: u64,
    /// Also measure produce -> consume latency with a consumer in this process.
    #[arg(long)]
    pub end_to_end: bool,
    /// While measuring, a second producer writes to this topic (created with
    /// flush.messages=1, an fsync per append, if missing).
    #[arg(long)]
    pub fsync_load_topic: Option<String>,
    /// Records per second of the fsync load: each is sent alone (no linger), so the broker
    /// fsyncs as often as the disk allows, up to this rate, with little data and CPU.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub fsync_load_rate: u64,
    /// Value size of the fsync load's records.
    #[arg(long, default_value_t = 1024)]
    pub fsync_load_record_size: usize,
}

/// Options of `strom bench rebalance`.
#[derive(Debug, Clone, Args)]
pub struct RebalanceBench {
    /// Topic (created with --partitions if missing; its records are not read).
    #[arg(long, default_value = "strom-bench-rebalance")]
    pub topic: String,
    /// Partitions of the topic if it has to be created.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Members of the group before a member joins.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub consumers: u64,
    /// Group id (default: a fresh one per run).
    #[arg(long)]
    pub group: Option<String>,
    /// The members' session.timeout.ms (bounds the detection of a dead member).
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    /// The members' heartbeat.interval.ms (bounds how soon members learn of a rebalance).
    #[arg(long, default_value_t = 1_000)]
    pub heartbeat_interval_ms: u64,
    /// The members' max.poll.interval.ms, which is also their rebalance timeout.
    #[arg(long, default_value_t = 300_000)]
    pub max_poll_interval_ms: u64,
    /// The members' partition.assignment.strategy.
    #[arg(long, default_value = "range", value_parser = ["range", "roundrobin", "cooperative-sticky"])]
    pub assignor: String,
    /// Skip the dead-member phase (it waits for a whole session timeout).
    #[arg(long)]
    pub skip_death: bool,
}

/// Runs `strom bench ...`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let client = args.client;
    match args.command {
        BenchCommand::Produce(bench) => {
            ensure_topic(&client, &bench.topic, bench.partitions, &[]).await?;
            let report = tokio::task::spawn_blocking(move || produce_throughput(&client, &bench))
                .await
                .context("benchmark thread failed")??;
            println!("{report}");
        }
        BenchCommand::Consume(bench) => {
            let report = tokio::task::spawn_blocking(move || consume_throughput(&client, &bench))
                .await
                .context("benchmark thread failed")??;
            println!("{report}");
        }
        BenchCommand::Latency(bench) => {
            ensure_topic(&client, &bench.topic, bench.partitions, &[]).await?;
            if let Some(load_topic) = &bench.fsync_load_topic {
                ensure_topic(&client, load_topic, 1, &[("flush.messages", "1")]).await?;
                let flush_messages = topic_config(&client, load_topic, "flush.messages").await;
                println!(
                    "fsync load: topic '{load_topic}', flush.messages={}",
                    flush_messages.as_deref().unwrap_or("unknown")
                );
            }
            let lines = tokio::task::spawn_blocking(move || latency(&client, &bench))
                .await
                .context("benchmark thread failed")??;
            for line in lines {
                println!("{line}");
            }
        }
        BenchCommand::Rebalance(bench) => {
            ensure_topic(&client, &bench.topic, bench.partitions, &[]).await?;
            let initial_delay = broker_config(&client, "group.initial.rebalance.delay.ms").await;
            println!(
                "rebalance: {} consumers, topic '{}', session.timeout.ms {}, heartbeat.interval.ms {}, \
                 max.poll.interval.ms {}, assignor {}, broker group.initial.rebalance.delay.ms {}",
                bench.consumers,
                bench.topic,
                bench.session_timeout_ms,
                bench.heartbeat_interval_ms,
                bench.max_poll_interval_ms,
                bench.assignor,
                initial_delay.as_deref().unwrap_or("unknown"),
            );
            if initial_delay.as_deref().is_some_and(|delay| delay != "0") {
                println!(
                    "note: the first phase includes the broker's initial rebalance delay; run the \
                     broker with group.initial.rebalance.delay.ms=0 to measure without it"
                );
            }
            tokio::task::spawn_blocking(move || rebalance(&client, &bench))
                .await
                .context("benchmark thread failed")??;
        }
        BenchCommand::Failover(bench) => crate::failover_bench::run(bench).await?,
    }
    Ok(())
}

/// A broker config value as DescribeConfigs reports it for the first broker in the metadata;
/// `None` when it cannot be read.
async fn broker_config(client: &ClientArgs, key: &str) -> Option<String> {
    let metadata = client.fetch_metadata(None, false).ok()?;
    let broker_id = metadata.brokers().first()?.id();
    described_config(client, ResourceSpecifier::Broker(broker_id), key).await
}

/// A topic config value as DescribeConfigs reports it; `None` when it cannot be read.
async fn topic_config(client: &ClientArgs, topic: &str, key: &str) -> Option<String> {
    described_config(client, ResourceSpecifier::Topic(topic), key).await
}

/// One config value of `resource` as DescribeConfigs reports it.
async fn described_config(
    client: &ClientArgs,
    resource: ResourceSpecifier<'_>,
    key: &str,
) -> Option<String> {
    let (admin, _): (AdminClient<CliContext>, _) = create_client(&client.client_config()).ok()?;
    let options = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
    let results = admin.describe_configs([&resource], &options).await.ok()?;
    let resource = results.into_iter().next()?.ok()?;
    resource
        .entries
        .into_iter()
        .find(|entry| entry.name == key)
        .and_then(|entry| entry.value)
}

/// Creates `topic` with `partitions` partitions and the given config overrides unless it exists
/// (an existing topic is used as it is), then waits (bounded) until its metadata shows a leader
/// for every partition.
async fn ensure_topic(
    client: &ClientArgs,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let (admin, context): (AdminClient<CliContext>, _) = create_client(&client.client_config())?;
    let metadata_client = client.metadata_client(false)?;
    let metadata = metadata_client.fetch(None)?;
    if metadata.topics().iter().any(|t| t.name() == topic) {
        return Ok(());
    }
    let new_topic = configs.iter().fold(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(-1)),
        |new_topic, (key, value)| new_topic.set(key, value),
    );
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|error| client.unreachable(&context, &error))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create topic: {}", topic_error_message(&name, code)),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metadata = metadata_client.fetch(Some(topic))?;
        let ready = metadata.topics().iter().any(|t| {
            t.name() == topic
                && t.error().is_none()
                && !t.partitions().is_empty()
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("topic '{topic}' was created but has no leaders after 10 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Producer context of the benchmarks: counts deliveries and failures and, when asked, records
/// each record's send -> delivery latency.
struct BenchProducerContext {
    cli: CliContext,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
    latencies: Option<Mutex<Histogram<u64>>>,
}

impl BenchProducerContext {
    fn new(cli: CliContext, measure_latency: bool) -> anyhow::Result<Self> {
        Ok(BenchProducerContext {
            cli,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_failure: Mutex::new(None),
            latencies: if measure_latency {
                Some(Mutex::new(new_histogram()?))
            } else {
                None
            },
        })
    }

    fn completed(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    /// Fails with the first delivery error if any record was not delivered.
    fn check_failures(&self) -> anyhow::Result<()> {
        let failed = self.failed.load(Ordering::Relaxed);
        if failed == 0 {
            return Ok(());
        }
        let first = self
            .first_failure
            .lock()
            .ok()
            .and_then(|guard| guard.clone())
            .unwrap_or_default();
        bail!("{failed} records were not delivered (first error: {first})")
    }
}

impl ClientContext for BenchProducerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.cli.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.cli.error(error, reason);
    }
}

impl ProducerContext for BenchProducerContext {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: Box<Instant>) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(latencies) = &self.latencies {
                    if let Ok(mut histogram) = latencies.lock() {
                        histogram.saturating_record(micros(sent_at.elapsed()));
                    }
                }
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_failure.lock() {
                    first.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).context("cannot create histogram")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Creates a threaded producer (its own thread serves delivery reports).
fn bench_producer(
    config: &ClientConfig,
    measure_latency: bool,
) -> anyhow::Result<ThreadedProducer<BenchProducerContext>> {
    let context = BenchProducerContext::new(CliContext::default(), measure_latency)?;
    config
        .create_with_context(context)
        .kafka_context("cannot create Kafka producer")
}

/// Enqueues one record, waiting while librdkafka's queue is full.
fn send_paced(
    producer: &ThreadedProducer<BenchProducerContext>,
    topic: &str,
    payload: &[u8],
) -> anyhow::Result<()> {
    let mut record =
        BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now()))
            .payload(payload);
    let mut waiting_since: Option<Instant> = None;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() > IDLE_LIMIT {
                    bail!("the producer queue stayed full for {IDLE_LIMIT:?}");
                }
                record = returned;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, _)) => bail!("cannot send: {error}"),
        }
    }
}

/// Waits until every sent record is delivered or failed; errors when nothing completes for
/// [`IDLE_LIMIT`].
fn await_deliveries(
    client: &ClientArgs,
    producer: &ThreadedProducer<BenchProducerContext>,
    sent: u64,
) -> anyhow::Result<()> {
    let context = producer.context();
    let mut last_progress = (context.completed(), Instant::now());
    while context.completed() < sent {
        let completed = context.completed();
        if completed != last_progress.0 {
            last_progress = (completed, Instant::now());
        } else if last_progress.1.elapsed() > IDLE_LIMIT {
            let error = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
            return Err(client.unreachable(&context.cli, &error)).context(format!(
                "{} of {sent} records still undelivered",
                sent - completed
            ));
        }
        // Flush drives delivery reports; its own timeout is only a polling interval here.
        let _ = producer.flush(Duration::from_millis(100));
    }
    context.check_failures()
}

fn produce_throughput(client: &ClientArgs, bench: &ProduceBench) -> anyhow::Result<String> {
    let mut config = client.client_config();
    config
        .set("acks", &bench.acks)
        .set("linger.ms", bench.linger_ms.to_string())
        .set("batch.size", bench.batch_size.to_string())
        .set("compression.type", &bench.compression)
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "60000");
    let producer = bench_producer(&config, false)?;
    let payload = vec![b'x'; bench.record_size];
    let start = Instant::now();
    for _ in 0..bench.records {
        send_paced(&producer, &bench.topic, &payload)?;
    }
    await_deliveries(client, &producer, bench.records)?;
    let elapsed = start.elapsed();
    Ok(throughput_line(
        "produce",
        bench.records,
        bench.records.saturating_mul(bench.record_size as u64),
        elapsed,
        Some(bench.record_size as u64),
    ))
}

/// Formats `<label>: N records[, S B], X MB/s, Y rec/s`.
fn throughput_line(
    label: &str,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    record_size: Option<u64>,
) -> String {
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    let size = record_size.map_or(String::new(), |size| format!(", {size} B"));
    format!(
        "{label}: {records} records{size}, {:.1} MB/s, {:.0} rec/s",
        bytes as f64 / BYTES_PER_MB / seconds,
        records as f64 / seconds
    )
}

/// A consumer assigned to every partition of `topic` at the given offsets.
fn assigned_consumer(
    client: &ClientArgs,
    topic: &str,
    extra: &[(&str, String)],
    start_at_end: bool,
) -> anyhow::Result<(BaseConsumer<CliContext>, u64)> {
    let mut config = client.client_config();
    config
        .set("group.id", throwaway_group_id("strom-bench"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (key, value) in extra {
        config.set(*key, value);
    }
    let (consumer, context): (BaseConsumer<CliContext>, _) = create_client(&config)?;
    let metadata = client.fetch_metadata(Some(topic), false)?;
    let topic_metadata = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| anyhow!("topic '{topic}' does not exist"))?;
    if let Some(code) = topic_metadata.error() {
        bail!(topic_error_message(topic, code.into()));
    }
    let mut assignment = TopicPartitionList::new();
    let mut available = 0u64;
    for partition in topic_metadata.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), METADATA_TIMEOUT)
            .map_err(|error| client.unreachable(&context, &error))?;
        available += u64::try_from(high - low).unwrap_or(0);
        let start = if start_at_end { high } else { low };
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Offset(start))
            .kafka_context("cannot build the partition assignment")?;
    }
    consumer
        .assign(&assignment)
        .kafka_context("cannot assign partitions")?;
    Ok((consumer, available))
}

fn consume_throughput(client: &ClientArgs, bench: &ConsumeBench) -> anyhow::Result<String> {
    let extra = [
        ("fetch.max.bytes", bench.fetch_max_bytes.to_string()),
        (
            "max.partition.fetch.bytes",
            bench.partition_fetch_max_bytes.to_string(),
        ),
        ("queued.max.messages.kbytes", "1048576".to_string()),
        ("fetch.wait.max.ms", "100".to_string()),
    ];
    let (consumer, available) = assigned_consumer(client, &bench.topic, &extra, false)?;
    let target = bench
        .records
        .map_or(available, |records| records.min(available));
    if target == 0 {
        bail!(
            "topic '{}' is empty; run `strom bench produce --topic {}` first",
            bench.topic,
            bench.topic
        );
    }
    let start = Instant::now();
    let mut last_record = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    while records < target {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                records += 1;
                bytes += message.payload_len() as u64;
                last_record = Instant::now();
            }
            Some(Err(error)) => bail!("consume failed: {error}"),
            None if last_record.elapsed() > IDLE_LIMIT => {
                bail!("no record for {IDLE_LIMIT:?} after {records} of {target} records")
            }
            None => {}
        }
    }
    Ok(throughput_line(
        "consume",
        records,
        bytes,
        start.elapsed(),
        None,
    ))
}

/// Formats the percentiles of a latency histogram (microseconds) in milliseconds.
fn latency_summary(histogram: &Histogram<u64>) -> String {
    let ms = |micros: u64| micros as f64 / 1000.0;
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        ms(histogram.value_at_quantile(0.50)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.value_at_quantile(0.999)),
        ms(histogram.max())
    )
}

/// The end-to-end half of the latency benchmark: consumes `expected` records and records
/// now - (send time in the payload) for each.
fn end_to_end_consumer(
    consumer: BaseConsumer<CliContext>,
    origin: Instant,
    expected: u64,
) -> anyhow::Result<Histogram<u64>> {
    let mut histogram = new_histogram()?;
    let mut received = 0u64;
    let mut last_record = Instant::now();
    while received < expected {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let now = micros(origin.elapsed());
                let sent = message
                    .payload()
                    .and_then(|payload| payload.get(..8))
                    .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                    .map(u64::from_le_bytes)
                    .ok_or_else(|| {
                        anyhow!("record without a send time at offset {}", message.offset())
                    })?;
                histogram.saturating_record(now.saturating_sub(sent).max(1));
                received += 1;
                last_record = Instant::now();
            }
            Some(Err(error)) => bail!("consume failed: {error}"),
            None if last_record.elapsed() > IDLE_LIMIT => {
                bail!("end-to-end consumer saw {received} of {expected} records")
            }
            None => {}
        }
    }
    Ok(histogram)
}

/// The `--fsync-load-topic` producer: writes records to `topic` at a fixed rate until `stop` is
/// set; returns its summary line.
struct FsyncLoad {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<String>>,
}

impl FsyncLoad {
    /// Starts the load and waits (bounded) until its first records were acknowledged, so the
    /// measurement runs while the broker fsyncs.
    fn start(
        client: &ClientArgs,
        topic: &str,
        rate: u64,
        record_size: usize,
    ) -> anyhow::Result<FsyncLoad> {
        let mut config = client.client_config();
        config
            .set("acks", "all")
            .set("linger.ms", "0")
            // A short queue: stopping must not wait for a backlog to be fsynced.
            .set("queue.buffering.max.messages", "1000")
            .set("message.timeout.ms", "60000");
        let producer = bench_producer(&config, false)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread = {
            let (client, topic, stop) = (client.clone(), topic.to_string(), Arc::clone(&stop));
            std::thread::spawn(move || -> anyhow::Result<String> {
                let payload = vec![b'f'; record_size];
                let interval = Duration::from_secs_f64(1.0 / rate as f64);
                let start = Instant::now();
                let mut sent = 0u64;
                let mut started = Some(started_tx);
                while !stop.load(Ordering::Relaxed) {
                    let due = start + interval.mul_f64(sent as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    send_paced(&producer, &topic, &payload)?;
                    sent += 1;
                    if producer.context().completed() > 0 {
                        if let Some(started) = started.take() {
                            let _ = started.send(());
                        }
                    }
                }
                await_deliveries(&client, &producer, sent)?;
                Ok(throughput_line(
                    "fsync load",
                    sent,
                    sent.saturating_mul(record_size as u64),
                    start.elapsed(),
                    Some(record_size as u64),
                ))
            })
        };
        if started_rx.recv_timeout(IDLE_LIMIT).is_err() {
            stop.store(true, Ordering::Relaxed);
            return match thread.join() {
                Ok(Err(error)) => Err(error.context("the fsync load did not start")),
                _ => bail!("the fsync load had no record acknowledged within {IDLE_LIMIT:?}"),
            };
        }
        Ok(FsyncLoad { stop, thread })
    }

    /// Stops the load, waits for its records, and returns its summary line.
    fn finish(self) -> anyhow::Result<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("fsync load thread panicked"))?
    }
}

fn latency(client: &ClientArgs, bench: &LatencyBench) -> anyhow::Result<Vec<String>> {
    let load = bench
        .fsync_load_topic
        .as_deref()
        .map(|topic| {
            FsyncLoad::start(
                client,
                topic,
                bench.fsync_load_rate,
                bench.fsync_load_record_size,
            )
        })
        .transpose()?;
    let origin = Instant::now();
    let e2e_consumer = if bench.end_to_end {
        let extra = [("fetch.wait.max.ms", "1".to_string())];
        let (consumer, _) = assigned_consumer(client, &bench.topic, &extra, true)?;
        let expected = bench.records;
        Some(std::thread::spawn(move || {
            end_to_end_consumer(consumer, origin, expected)
        }))
    } else {
        None
    };

    let mut config = client.client_config();
    config
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "60000");
    let producer = bench_producer(&config, true)?;
    let mut payload = vec![b'x'; usize::try_from(bench.record_size).unwrap_or(8)];
    let interval = Duration::from_secs_f64(1.0 / bench.rate as f64);
    let start = Instant::now();
    for index in 0..bench.records {
        let due = start + interval.mul_f64(index as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        payload[..8].copy_from_slice(&micros(origin.elapsed()).to_le_bytes());
        send_paced(&producer, &bench.topic, &payload)?;
    }
    let send_seconds = start.elapsed().as_secs_f64().max(f64::EPSILON);
    await_deliveries(client, &producer, bench.records)?;
    let load_line = load.map(FsyncLoad::finish).transpose()?;

    let mut lines = vec![format!(
        "latency: {} records, {} B, target {} rec/s, actual {:.0} rec/s",
        bench.records,
        bench.record_size,
        bench.rate,
        bench.records as f64 / send_seconds
    )];
    let delivery = producer
        .context()
        .latencies
        .as_ref()
        .and_then(|latencies| latencies.lock().ok().map(|histogram| histogram.clone()))
        .ok_or_else(|| anyhow!("delivery latencies were not recorded"))?;
    lines.push(format!("delivery latency: {}", latency_summary(&delivery)));
    if let Some(consumer_thread) = e2e_consumer {
        let histogram = consumer_thread
            .join()
            .map_err(|_| anyhow!("end-to-end consumer thread panicked"))??;
        lines.push(format!(
            "end-to-end latency: {}",
            latency_summary(&histogram)
        ));
    }
    lines.extend(load_line);
    Ok(lines)
}

/// The partitions each in-process group member holds, updated from the members' rebalance
/// callbacks; `changed` is notified on every update.
#[derive(Default)]
struct GroupView {
    assignments: Mutex<BTreeMap<usize, BTreeSet<i32>>>,
    changed: Condvar,
}

impl GroupView {
    /// Registers a member that holds nothing yet.
    fn add_member(&self, member: usize) {
        if let Ok(mut assignments) = self.assignments.lock() {
            assignments.insert(member, BTreeSet::new());
        }
        self.changed.notify_all();
    }

    /// Forgets a member (it is leaving or gone); its later callbacks are ignored.
    fn remove_member(&self, member: usize) {
        if let Ok(mut assignments) = self.assignments.lock() {
            assignments.remove(&member);
        }
        self.changed.notify_all();
    }

    fn set_assignment(&self, member: usize, partitions: BTreeSet<i32>) {
        if let Ok(mut assignments) = self.assignments.lock() {
            if let Some(slot) = assignments.get_mut(&member) {
                *slot = partitions;
            }
        }
        self.changed.notify_all();
    }

    /// Waits until the group is stable (see [`is_stable`]) with `external_members` members
    /// outside this process; returns the time waited, or fails after `limit`.
    fn wait_stable(
        &self,
        partitions: usize,
        external_members: usize,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut assignments = self
            .assignments
            .lock()
            .map_err(|_| anyhow!("a group member thread panicked"))?;
        loop {
            if is_stable(&assignments, partitions, external_members) {
                return Ok(start.elapsed());
            }
            let remaining = limit.saturating_sub(start.elapsed());
            if remaining.is_zero() {
                let held: Vec<usize> = assignments.values().map(BTreeSet::len).collect();
                bail!(
                    "the group did not become stable within {limit:?} (partitions held by the \
                     {} members here: {held:?})",
                    assignments.len()
                );
            }
            assignments = self
                .changed
                .wait_timeout(assignments, remaining)
                .map_err(|_| anyhow!("a group member thread panicked"))?
                .0;
        }
    }
}

/// Whether the members' assignments form a stable group: no partition held twice, every member
/// holding a fair share (`partitions / members`, rounded down or up), and every partition held,
/// except for the fair share of each of the `external_members` that cannot be observed.
fn is_stable(
    assignments: &BTreeMap<usize, BTreeSet<i32>>,
    partitions: usize,
    external_members: usize,
) -> bool {
    let members = assignments.len() + external_members;
    if assignments.is_empty() {
        return false;
    }
    let (fair_low, fair_high) = (partitions / members, partitions.div_ceil(members));
    let held: usize = assignments.values().map(BTreeSet::len).sum();
    let distinct: BTreeSet<i32> = assignments.values().flatten().copied().collect();
    let balanced = assignments
        .values()
        .all(|partitions| (fair_low..=fair_high).contains(&partitions.len()));
    let externally_held = partitions.saturating_sub(held);
    distinct.len() == held
        && balanced
        && (external_members * fair_low..=external_members * fair_high).contains(&externally_held)
}

/// Consumer context of a benchmark group member: records the member's assignment after every
/// rebalance.
struct MemberContext {
    cli: CliContext,
    view: Arc<GroupView>,
    member: usize,
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.cli.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.cli.error(error, reason);
    }
}

impl ConsumerContext for MemberContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(error) = rebalance {
            tracing::debug!(member = self.member, "rebalance error: {error}");
        }
        // Eager assignors hand out whole assignments, cooperative ones increments: the
        // consumer's current assignment is right for both.
        match consumer.assignment() {
            Ok(assignment) => {
                let partitions = assignment
                    .elements()
                    .iter()
                    .map(|element| element.partition())
                    .collect();
                self.view.set_assignment(self.member, partitions);
            }
            Err(error) => tracing::debug!(member = self.member, "cannot read assignment: {error}"),
        }
    }
}

/// A group member polling on its own thread until told to stop; then it closes its consumer,
/// which leaves the group.
struct Member {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Member {
    fn start(
        config: &ClientConfig,
        topic: &str,
        view: &Arc<GroupView>,
        member: usize,
    ) -> anyhow::Result<Member> {
        view.add_member(member);
        let context = MemberContext {
            cli: CliContext::default(),
            view: Arc::clone(view),
            member,
        };
        let consumer: BaseConsumer<MemberContext> = config
            .create_with_context(context)
            .kafka_context("cannot create group member")?;
        consumer
            .subscribe(&[topic])
            .kafka_context("cannot subscribe")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("member-{member}"))
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    if let Some(Err(error)) = consumer.poll(Duration::from_millis(50)) {
                        tracing::debug!(member, "poll error: {error}");
                    }
                }
            })
            .context("cannot start a group member thread")?;
        Ok(Member { stop, thread })
    }

    /// Stops polling and closes the consumer (LeaveGroup), waiting for the close.
    fn leave(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("a group member thread panicked"))
    }
}

/// A group member in a `strom consume` child process; killed (SIGKILL) on drop.
struct ChildMember(std::process::Child);

impl ChildMember {
    fn start(client: &ClientArgs, bench: &RebalanceBench, group: &str) -> anyhow::Result<Self> {
        let mut command = std::process::Command::new(
            std::env::current_exe().context("cannot find the strom executable")?,
        );
        command
            .args(["consume", &bench.topic, "--group", group])
            .args(["--bootstrap-server", &client.bootstrap_server]);
        for (key, value) in client
            .client_properties
            .iter()
            .chain(&member_properties(bench))
        {
            command.arg("-X").arg(format!("{key}={value}"));
        }
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot start a `strom consume` group member")?;
        Ok(ChildMember(child))
    }

    /// SIGKILLs the member: it never sends LeaveGroup.
    fn kill(&mut self) -> anyhow::Result<()> {
        self.0
            .kill()
            .context("cannot kill the child group member")?;
        self.0
            .wait()
            .context("cannot reap the child group member")?;
        Ok(())
    }
}

impl Drop for ChildMember {
    fn drop(&mut self) {
        // Already dead after `kill`; otherwise the benchmark failed and the child must go.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Client properties of every benchmark group member.
fn member_properties(bench: &RebalanceBench) -> Vec<(String, String)> {
    [
        ("session.timeout.ms", bench.session_timeout_ms.to_string()),
        (
            "heartbeat.interval.ms",
            bench.heartbeat_interval_ms.to_string(),
        ),
        (
            "max.poll.interval.ms",
            bench.max_poll_interval_ms.to_string(),
        ),
        ("partition.assignment.strategy", bench.assignor.clone()),
        ("enable.auto.commit", "false".to_string()),
        ("enable.partition.eof", "false".to_string()),
        ("auto.offset.reset", "latest".to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

/// Runs the rebalance phases, printing one line per phase as it completes.
fn rebalance(client: &ClientArgs, bench: &RebalanceBench) -> anyhow::Result<()> {
    let metadata = client.fetch_metadata(Some(&bench.topic), false)?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == bench.topic)
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        bail!("topic '{}' has no partitions", bench.topic);
    }
    let group = bench
        .group
        .clone()
        .unwrap_or_else(|| throwaway_group_id("strom-bench-rebalance"));
    let mut config = client.client_config();
    config.set("group.id", &group);
    for (key, value) in member_properties(bench) {
        config.set(key, value);
    }
    // Every phase is bounded by the timeouts: a member is noticed dead after a session
    // timeout, and the join phase waits at most a rebalance timeout for the members.
    let limit = Duration::from_millis(bench.session_timeout_ms + bench.max_poll_interval_ms)
        + Duration::from_secs(30);
    let consumers = usize::try_from(bench.consumers).context("too many consumers")?;
    let view = Arc::new(GroupView::default());
    println!("group '{group}', {partitions} partitions");

    let mut members = Vec::with_capacity(consumers + 1);
    let outcome = (|| -> anyhow::Result<()> {
        let start = Instant::now();
        for member in 0..consumers {
            members.push(Member::start(&config, &bench.topic, &view, member)?);
        }
        view.wait_stable(partitions, 0, limit)?;
        println!(
            "form: {consumers} members join an empty group: stable after {} ms",
            start.elapsed().as_millis()
        );

        let start = Instant::now();
        members.push(Member::start(&config, &bench.topic, &view, consumers)?);
        view.wait_stable(partitions, 0, limit)?;
        println!(
            "join: member {} joins: stable after {} ms (members learn of a rebalance on their \
             next heartbeat, every {} ms)",
            consumers + 1,
            start.elapsed().as_millis(),
            bench.heartbeat_interval_ms
        );

        let start = Instant::now();
        view.remove_member(0);
        members.remove(0).leave()?;
        let closed_after = start.elapsed();
        view.wait_stable(partitions, 0, limit)?;
        println!(
            "leave: a member closes (LeaveGroup): stable after {} ms ({} ms of it closing the \
             consumer)",
            start.elapsed().as_millis(),
            closed_after.as_millis()
        );

        if bench.skip_death {
            return Ok(());
        }
        let mut child = ChildMember::start(client, bench, &group)?;
        view.wait_stable(partitions, 1, limit)?;
        let start = Instant::now();
        child.kill()?;
        view.wait_stable(partitions, 0, limit)?;
        println!(
            "death: a member is killed (SIGKILL, no LeaveGroup): stable after {} ms (bounded by \
             session.timeout.ms {})",
            start.elapsed().as_millis(),
            bench.session_timeout_ms
        );
        Ok(())
    })();
    for member in members {
        member.leave()?;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn bench_command(argv: &[&str]) -> anyhow::Result<BenchCommand> {
        let mut full = vec!["strom", "bench"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full)? {
            Cli {
                command: Command::Bench(args),
            } => Ok(args.command),
            other => panic!("unexpected command {other:?}"),
        }
    }

    #[test]
    fn produce_defaults() {
        let BenchCommand::Produce(bench) = bench_command(&["produce"]).unwrap() else {
            panic!("expected produce");
        };
        assert_eq!(bench.records, 1_000_000);
        assert_eq!(bench.record_size, 1024);
        assert_eq!(bench.acks, "1");
        assert_eq!(bench.linger_ms, 5);
        assert_eq!(bench.batch_size, 1_048_576);
        assert_eq!(bench.compression, "none");
    }

    #[test]
    fn latency_options() {
        let BenchCommand::Latency(bench) = bench_command(&[
            "latency",
            "--rate",
            "500",
            "--end-to-end",
            "--records",
            "10",
        ])
        .unwrap() else {
            panic!("expected latency");
        };
        assert_eq!(bench.rate, 500);
        assert!(bench.end_to_end);
        assert_eq!(bench.records, 10);
        assert_eq!(bench.fsync_load_topic, None);
        let BenchCommand::Latency(loaded) =
            bench_command(&["latency", "--fsync-load-topic", "a"]).unwrap()
        else {
            panic!("expected latency");
        };
        assert_eq!(loaded.fsync_load_topic.as_deref(), Some("a"));
        assert_eq!(loaded.fsync_load_record_size, 1024);
        assert_eq!(loaded.fsync_load_rate, 1000);
        assert!(bench_command(&["latency", "--rate", "0"]).is_err());
        assert!(bench_command(&["latency", "--record-size", "4"]).is_err());
    }

    #[test]
    fn consume_options() {
        let BenchCommand::Consume(bench) =
            bench_command(&["consume", "--topic", "x", "--records", "5"]).unwrap()
        else {
            panic!("expected consume");
        };
        assert_eq!(bench.topic, "x");
        assert_eq!(bench.records, Some(5));
    }

    #[test]
    fn throughput_line_format() {
        let line = throughput_line(
            "produce",
            1000,
            1000 * 1024,
            Duration::from_secs(1),
            Some(1024),
        );
        assert_eq!(line, "produce: 1000 records, 1024 B, 1.0 MB/s, 1000 rec/s");
    }

    #[test]
    fn latency_summary_format() {
        let mut histogram = new_histogram().unwrap();
        for micros in 1..=1000 {
            histogram.saturating_record(micros);
        }
        let summary = latency_summary(&histogram);
        assert!(
            summary.starts_with("p50 0.500 ms, p99 0.990 ms"),
            "{summary}"
        );
        assert!(summary.ends_with("max 1.000 ms"), "{summary}");
    }

    #[test]
    fn rebalance_defaults() {
        let BenchCommand::Rebalance(bench) = bench_command(&["rebalance"]).unwrap() else {
            panic!("expected rebalance");
        };
        assert_eq!(bench.consumers, 10);
        assert_eq!(bench.partitions, 100);
        assert_eq!(bench.assignor, "range");
        assert!(bench_command(&["rebalance", "--consumers", "1"]).is_err());
        assert!(bench_command(&["rebalance", "--assignor", "sticky"]).is_err());
    }

    #[test]
    fn stability_needs_every_partition_once_and_evenly() {
        let view = |sets: &[&[i32]]| -> BTreeMap<usize, BTreeSet<i32>> {
            sets.iter()
                .enumerate()
                .map(|(member, set)| (member, set.iter().copied().collect()))
                .collect()
        };
        assert!(is_stable(&view(&[&[0, 1], &[2, 3], &[4]]), 5, 0));
        // A partition missing, held twice, or an unbalanced split.
        assert!(!is_stable(&view(&[&[0, 1], &[2, 3], &[]]), 5, 0));
        assert!(!is_stable(&view(&[&[0, 1], &[1, 2], &[3, 4]]), 5, 0));
        assert!(!is_stable(&view(&[&[0, 1, 2, 3], &[4]]), 5, 0));
        // One unobserved member holds the rest.
        assert!(is_stable(&view(&[&[0, 1], &[2, 3]]), 5, 1));
        assert!(!is_stable(&view(&[&[0, 1, 2], &[3, 4]]), 5, 1));
        assert!(!is_stable(&BTreeMap::new(), 5, 1));
    }
}
