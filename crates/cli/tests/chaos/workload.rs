//! The clients of a fault-injection run: writers (idempotent `acks=all` rdkafka producers, each
//! on its own thread, sending at a steady rate round-robin over the partitions, recording every
//! acknowledgement and failure from librdkafka's delivery reports) and live readers (rdkafka
//! consumers assigned every partition from the beginning, `read_uncommitted`, recording every
//! record with its offset), plus the final read of every partition.
//!
//! A writer is one producer instance: after a fatal error (an idempotent producer that lost its
//! sequence, say) the thread starts a new instance under a new writer id, so a writer's
//! sequence numbers are only ever sent by one producer id and must appear in order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::history::{Ack, Failure, History, Observed, PartitionRead, Tag};

/// Records a writer may have in flight before it waits.
const MAX_IN_FLIGHT: i32 = 200;
/// How long a stopping writer waits for its outstanding records.
const FLUSH_DEADLINE: Duration = Duration::from_secs(20);

/// What the clients do.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub writers: usize,
    pub readers: usize,
    /// Records per second per writer.
    pub rate: u32,
    /// Padding bytes per value.
    pub filler: usize,
}

/// The writers' shared record of what they sent and what became of it.
#[derive(Default)]
struct WriterLog {
    history: History,
    /// Writer instances started (including replacements after fatal errors).
    instances: u32,
    fatal: Vec<String>,
}

/// Running writers and readers.
pub struct Workload {
    log: Arc<Mutex<WriterLog>>,
    stop_writers: Arc<AtomicBool>,
    stop_readers: Arc<AtomicBool>,
    writers: Vec<JoinHandle<()>>,
    readers: Vec<JoinHandle<Vec<Observed>>>,
}

impl Workload {
    /// Starts the writer and reader threads.
    pub fn start(config: &WorkloadConfig) -> Workload {
        let log = Arc::new(Mutex::new(WriterLog::default()));
        let stop_writers = Arc::new(AtomicBool::new(false));
        let stop_readers = Arc::new(AtomicBool::new(false));
        let next_writer = Arc::new(AtomicU32::new(1));
        let writers = (0..config.writers)
            .map(|_| {
                let (config, log) = (config.clone(), Arc::clone(&log));
                let (stop, ids) = (Arc::clone(&stop_writers), Arc::clone(&next_writer));
                std::thread::spawn(move || write(&config, &log, &stop, &ids))
            })
            .collect();
        let readers = (0..config.readers)
            .map(|_| {
                let (config, stop) = (config.clone(), Arc::clone(&stop_readers));
                std::thread::spawn(move || read_live(&config, &stop))
            })
            .collect();
        Workload {
            log,
            stop_writers,
            stop_readers,
            writers,
            readers,
        }
    }

    /// Records acknowledged so far, per partition.
    pub fn acked_per_partition(&self) -> BTreeMap<i32, usize> {
        let mut counts = BTreeMap::new();
        for ack in &lock(&self.log).history.acked {
            *counts.entry(ack.partition).or_default() += 1;
        }
        counts
    }

    /// Stops the writers (each waits for its outstanding records, bounded) and the readers, and
    /// returns what they recorded, with a line on the writers for the report.
    pub fn stop(self) -> (History, String) {
        self.stop_writers.store(true, Ordering::Relaxed);
        for writer in self.writers {
            writer.join().expect("writer thread panicked");
        }
        self.stop_readers.store(true, Ordering::Relaxed);
        let mut observed = Vec::new();
        for reader in self.readers {
            observed.extend(reader.join().expect("reader thread panicked"));
        }
        let log = std::mem::take(&mut *lock(&self.log));
        let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
        for failure in &log.history.failed {
            *errors.entry(failure.error.as_str()).or_default() += 1;
        }
        let summary = format!(
            "workload: {} writer instances ({} replaced after fatal errors: {:?}); failures by \
             error: {errors:?}",
            log.instances,
            log.fatal.len(),
            log.fatal.iter().take(3).collect::<Vec<_>>()
        );
        let mut history = log.history;
        history.observed = observed;
        (history, summary)
    }
}

fn lock(log: &Mutex<WriterLog>) -> MutexGuard<'_, WriterLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// Turns librdkafka's delivery reports into acknowledgements and failures.
struct Recorder {
    log: Arc<Mutex<WriterLog>>,
}

impl ClientContext for Recorder {}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut log = lock(&self.log);
        match result {
            Ok(message) => {
                if let Some(tag) = message.payload().and_then(Tag::decode) {
                    log.history.acked.push(Ack {
                        tag,
                        partition: message.partition(),
                        offset: message.offset(),
                    });
                }
            }
            Err((error, message)) => {
                if let Some(tag) = message.payload().and_then(Tag::decode) {
                    log.history.failed.push(Failure {
                        tag,
                        error: error.to_string(),
                    });
                }
            }
        }
    }
}

/// A client config with the settings every client of the run shares.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .set("socket.timeout.ms", "5000")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("reconnect.backoff.max.ms", "1000");
    config
}

/// One writer thread: producer instances one after another until `stop`.
fn write(config: &WorkloadConfig, log: &Arc<Mutex<WriterLog>>, stop: &AtomicBool, ids: &AtomicU32) {
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    let partitions = u64::try_from(config.partitions.max(1)).expect("positive");
    while !stop.load(Ordering::Relaxed) {
        let writer = ids.fetch_add(1, Ordering::Relaxed);
        let mut producer_config = client_config(&config.bootstrap);
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("request.timeout.ms", "5000")
            .set("message.timeout.ms", "30000");
        let producer: ThreadedProducer<Recorder> = producer_config
            .create_with_context(Recorder {
                log: Arc::clone(log),
            })
            .expect("create producer");
        lock(log).instances += 1;
        let mut seq = 0u64;
        let mut next_send = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if let Some((code, reason)) = producer.client().fatal_error() {
                lock(log)
                    .fatal
                    .push(format!("w{writer}: {code:?}: {reason}"));
                break;
            }
            let now = Instant::now();
            if now < next_send {
                std::thread::sleep((next_send - now).min(Duration::from_millis(10)));
                continue;
            }
            if producer.in_flight_count() >= MAX_IN_FLIGHT {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            // After a stall, go on at the rate rather than in a burst.
            next_send = next_send.max(now - interval) + interval;
            let tag = Tag { writer, seq };
            let value = tag.encode(config.filler);
            let partition = i32::try_from(seq % partitions).expect("partition fits i32");
            lock(log).history.sent.insert(tag);
            let record = BaseRecord::<(), _>::to(&config.topic)
                .partition(partition)
                .payload(&value);
            match producer.send(record) {
                Ok(()) => seq += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((error, _)) => {
                    lock(log).history.failed.push(Failure {
                        tag,
                        error: format!("not queued: {error}"),
                    });
                    seq += 1;
                }
            }
        }
        // Outstanding records get their reports; dropping the producer purges what is left,
        // which reports those as failed.
        let _ = producer.flush(Timeout::After(FLUSH_DEADLINE));
    }
}

/// A consumer assigned every partition of the topic at `offset`.
fn assigned_consumer(config: &WorkloadConfig, bootstrap: &str, offset: Offset) -> BaseConsumer {
    static NEXT_GROUP: AtomicU32 = AtomicU32::new(0);
    let group = format!(
        "chaos-reader-{}-{}",
        std::process::id(),
        NEXT_GROUP.fetch_add(1, Ordering::Relaxed)
    );
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_uncommitted")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("create consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..config.partitions {
        assignment
            .add_partition_offset(&config.topic, partition, offset)
            .expect("add partition");
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// One live reader: everything it reads until `stop`.
fn read_live(config: &WorkloadConfig, stop: &AtomicBool) -> Vec<Observed> {
    let consumer = assigned_consumer(config, &config.bootstrap, Offset::Beginning);
    let mut observed = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            observed.push(Observed {
                partition: message.partition(),
                offset: message.offset(),
                value: message.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    observed
}

/// Reads every partition from offset 0 to its high watermark through `bootstrap`, within
/// `deadline`; a partition whose high watermark cannot be learned or that cannot be read to it
/// in time is `None`, as is every partition for which `readable` says false.
pub fn read_all(
    config: &WorkloadConfig,
    bootstrap: &str,
    readable: impl Fn(i32) -> bool,
    deadline: Duration,
) -> BTreeMap<i32, Option<PartitionRead>> {
    let until = Instant::now() + deadline;
    let consumer = assigned_consumer(config, bootstrap, Offset::Beginning);
    let mut reads: BTreeMap<i32, Option<PartitionRead>> = BTreeMap::new();
    for partition in 0..config.partitions {
        if !readable(partition) {
            reads.insert(partition, None);
            continue;
        }
        let high = loop {
            let remaining = until.saturating_duration_since(Instant::now());
            match consumer.fetch_watermarks(
                &config.topic,
                partition,
                remaining.min(Duration::from_secs(5)),
            ) {
                Ok((_, high)) => break Some(high),
                Err(_) if !remaining.is_zero() => std::thread::sleep(Duration::from_millis(200)),
                Err(_) => break None,
            }
        };
        reads.insert(
            partition,
            high.map(|high| PartitionRead {
                high,
                records: Vec::new(),
            }),
        );
    }
    let done = |reads: &BTreeMap<i32, Option<PartitionRead>>| {
        reads
            .values()
            .flatten()
            .all(|read| read.records.last().map_or(0, |(offset, _)| offset + 1) >= read.high)
    };
    while !done(&reads) && Instant::now() < until {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        if let Some(Some(read)) = reads.get_mut(&message.partition()) {
            // A consumer that was reset (offset out of range) reads some offsets again.
            let next = read.records.last().map_or(0, |(offset, _)| offset + 1);
            if message.offset() >= next && message.offset() < read.high {
                read.records.push((
                    message.offset(),
                    message.payload().unwrap_or_default().to_vec(),
                ));
            }
        }
    }
    for read in reads.values_mut() {
        let unfinished = read
            .as_ref()
            .is_some_and(|r| r.records.last().map_or(0, |(offset, _)| offset + 1) < r.high);
        if unfinished {
            *read = None;
        }
    }
    reads
}
