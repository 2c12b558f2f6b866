//! Fetch (key 1): reads record batches from partition logs, with long polling.
//!
//! Data path: for each requested partition its owner returns whole batches, starting with the
//! batch that contains the fetch offset and ending before the high watermark (also the
//! `high_watermark` reported), as one `Bytes` read from the segment file; the response encoder
//! carries those bytes to the socket without copying them. A pass that reads a log runs off the
//! async worker ([`off_worker`]: a read of cold data waits for the disk); a consumer that has
//! caught up (fetching at the high watermark) is answered from the offsets the partition's owner
//! publishes, without its log, so a long poll costs no thread handoff. Limits follow Kafka:
//! `max_bytes` for the response and `partition_max_bytes` per partition, except that the first
//! batch found is always returned whole (KIP-74) so a large record can never stall a consumer;
//! `max_bytes` itself is capped at Kafka's default `fetch.max.bytes`. If fewer than `min_bytes`
//! are available the request waits in the purgatory (Kafka's delayed fetch) until the high
//! watermark of one of *its* partitions moves, then reads again, up to `max_wait_ms`; appends to
//! other partitions do not wake it. A partition whose storage failed answers
//! KAFKA_STORAGE_ERROR; an error on any partition answers at once, as in Kafka.
//!
//! Followers fetch with the same request, naming their broker id (`replica_id`, or
//! `replica_state` from v15): they read up to the log end rather than the high watermark, their
//! fetch offset tells the leader how far they have come (which may move the high watermark and
//! grow the ISR: [`Partition::fetch`]), and a follower's long poll waits for the leader's log end
//! to move instead of its high watermark. For every fetcher the leader epoch it names is checked
//! (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH), and one that names its last fetched epoch is
//! told where its log diverges (`diverging_epoch`) rather than given records.
//!
//! Fetch sessions (KIP-227) are not kept: every response carries session id 0, which tells clients
//! to send full fetch requests. With no transactions yet, the last stable offset is the high
//! watermark for both isolation levels.

use std::sync::Arc;
use std::time::Duration;
use strom_protocol::ErrorCode;

use bytes::Bytes;
use strom_protocol::messages::fetch_request::{FetchRequest, FetchTopic};
use strom_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use tokio::time::Instant;

use crate::partitions::{off_worker, FetchOutcome, FetchPosition, Partition};
use crate::purgatory::{HighWatermarkWatchers, Wake};
use crate::replication;
use crate::state::Broker;

const READ_COMMITTED: i8 = 1;
/// Fetch v13 and later name topics by id.
const FIRST_VERSION_WITH_TOPIC_IDS: i16 = 13;
/// Fetch v15 and later carry the follower's id in `replica_state`.
const FIRST_VERSION_WITH_REPLICA_STATE: i16 = 15;

/// The broker id of the follower sending `request`, `None` for a consumer.
fn follower_id(request: &FetchRequest, version: i16) -> Option<i32> {
    let id = if version >= FIRST_VERSION_WITH_REPLICA_STATE {
        request.replica_state.replica_id
    } else {
        request.replica_id
    };
    (id >= 0).then_some(id)
}

pub async fn handle(broker: &Broker, request: FetchRequest, version: i16) -> FetchResponse {
    long_poll(broker, request, version).await.0
}

/// The fetch with its long poll: the response, and how many times the wait was woken by a change
/// of one of the requested partitions.
async fn long_poll(broker: &Broker, request: FetchRequest, version: i16) -> (FetchResponse, u64) {
    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    let deadline = Instant::now() + max_wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let follower = follower_id(&request, version);
    let mut wakeups = 0;
    loop {
        // Watch before reading, so that no move of a high watermark (a follower: of a log end)
        // after the read is missed.
        let mut watchers = HighWatermarkWatchers::default();
        for partition in requested_partitions(broker, &request, version)
            .into_iter()
            .flatten()
        {
            match follower {
                Some(_) => watchers.watch_log_end(&partition),
                None => watchers.watch(&partition),
            }
        }
        // A consumer that has caught up needs nothing from the disk: answered here. Anything
        // else, and every follower's fetch, is read off the worker.
        let first_source = match follower {
            Some(_) => Source::Log,
            None => Source::PublishedOnly,
        };
        let mut pass = if first_source == Source::Log {
            off_worker(|| read_once(broker, &request, version, Source::Log))
        } else {
            read_once(broker, &request, version, Source::PublishedOnly)
        };
        if pass.needs_log {
            pass = off_worker(|| read_once(broker, &request, version, Source::Log));
        }
        if pass.bytes >= min_bytes
            || pass.has_error
            || watchers.is_empty()
            || Instant::now() >= deadline
        {
            return (pass.response, wakeups);
        }
        match watchers.wait(deadline).await {
            // Nothing moved since the read: it is still the answer.
            Wake::Expired => return (pass.response, wakeups),
            Wake::Changed => wakeups += 1,
        }
    }
}

/// The name a requested topic goes by: its id resolved from v13 on.
fn topic_name(
    image: &strom_metadata::MetadataImage,
    topic: &FetchTopic,
    version: i16,
) -> Option<String> {
    if version >= FIRST_VERSION_WITH_TOPIC_IDS {
        image.topic_by_id(&topic.topic_id).map(|t| t.name.clone())
    } else {
        Some(topic.topic.clone())
    }
}

/// The owner of every requested partition (`None` where none is hosted).
fn requested_partitions(
    broker: &Broker,
    request: &FetchRequest,
    version: i16,
) -> Vec<Option<Arc<Partition>>> {
    let image = broker.image();
    request
        .topics
        .iter()
        .flat_map(|topic| {
            let name = topic_name(&image, topic, version);
            topic
                .partitions
                .iter()
                .map(move |wanted| broker.partitions.get(name.as_deref()?, wanted.partition))
        })
        .collect()
}

/// One pass over the requested partitions.
struct ReadPass {
    response: FetchResponse,
    /// Record bytes in the response.
    bytes: usize,
    /// A partition had to be skipped: it needs its log (only with [`Source::PublishedOnly`]).
    needs_log: bool,
    /// Some partition reported an error (which makes the fetch return at once, as in Kafka).
    has_error: bool,
}

/// Reads every requested partition once, from `source`.
/// Where a pass may read from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Only what the partitions' owners publish (caught-up consumers): no lock, no disk.
    PublishedOnly,
    /// The logs (blocking: run off the worker).
    Log,
}

fn read_once(broker: &Broker, request: &FetchRequest, version: i16, source: Source) -> ReadPass {
    let image = broker.image();
    // The broker's `fetch.max.bytes` caps the request's `max_bytes`: a request asking for 2 GiB
    // (or naming one partition many times) must not make us read that much.
    let mut remaining = usize::try_from(request.max_bytes)
        .unwrap_or(0)
        .min(usize::try_from(broker.config.fetch_max_bytes).unwrap_or(0));
    let mut total = 0usize;
    let mut has_error = false;
    let mut needs_log = false;
    let read_committed = request.isolation_level == READ_COMMITTED;
    let follower = follower_id(request, version);
    let eligible = |replica: i32| strom_metadata::leadership::is_live(&image, replica);

    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic_name(&image, topic, version);
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let mut data = PartitionData {
                        partition_index: wanted.partition,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        aborted_transactions: read_committed.then(Vec::new),
                        records: Some(Bytes::new()),
                        ..Default::default()
                    };
                    let partition = name
                        .as_deref()
                        .and_then(|n| broker.partitions.get(n, wanted.partition));
                    let Some(partition) = partition else {
                        data.error_code = match name.as_deref() {
                            None => ErrorCode::UnknownTopicId.code(),
                            Some(n) => broker.partition_not_hosted_error(n, wanted.partition),
                        };
                        has_error = true;
                        return data;
                    };
                    let limit =
                        remaining.min(usize::try_from(wanted.partition_max_bytes).unwrap_or(0));
                    // With the budget spent, the read still checks the offset and reports
                    // the partition's offsets, as Kafka's does.
                    let min_one_message = total == 0;
                    let caught_up = match follower {
                        Some(_) => None,
                        None => partition
                            .read_caught_up(wanted.fetch_offset, wanted.current_leader_epoch),
                    };
                    let read = match caught_up {
                        Some(caught_up) => Ok(FetchOutcome::Records(caught_up)),
                        None if source == Source::PublishedOnly => {
                            needs_log = true;
                            return data;
                        }
                        None => {
                            let position = FetchPosition {
                                replica_id: follower,
                                fetch_offset: wanted.fetch_offset,
                                current_leader_epoch: wanted.current_leader_epoch,
                                last_fetched_epoch: wanted.last_fetched_epoch,
                            };
                            partition
                                .fetch(position, limit, min_one_message, &eligible)
                                .map(|(outcome, isr_change)| {
                                    if let Some(change) = isr_change {
                                        replication::propose_isr_change(broker, &partition, change);
                                    }
                                    outcome
                                })
                        }
                    };
                    match read {
                        Ok(FetchOutcome::Records(read)) => {
                            data.high_watermark = read.high_watermark;
                            data.last_stable_offset = read.high_watermark;
                            data.log_start_offset = read.log_start_offset;
                            remaining = remaining.saturating_sub(read.records.len());
                            total += read.records.len();
                            data.records = Some(read.records);
                        }
                        Ok(FetchOutcome::Diverging {
                            epoch,
                            end_offset,
                            high_watermark,
                            log_start_offset,
                        }) => {
                            data.diverging_epoch.epoch = epoch;
                            data.diverging_epoch.end_offset = end_offset;
                            data.high_watermark = high_watermark;
                            data.last_stable_offset = high_watermark;
                            data.log_start_offset = log_start_offset;
                            // Nothing to wait for: the fetcher must truncate first.
                            has_error = true;
                        }
                        Err(error) => {
                            data.error_code = error.error_code();
                            if data.error_code == ErrorCode::OffsetOutOfRange.code() {
                                // What a follower needs to reset its position.
                                let published = *partition.subscribe().borrow();
                                data.high_watermark = published.high_watermark;
                                data.log_start_offset = published.log_start_offset;
                            }
                            has_error = true;
                        }
                    }
                    data
                })
                .collect();
            FetchableTopicResponse {
                topic: topic.topic.clone(),
                topic_id: topic.topic_id,
                partitions,
            }
        })
        .collect();

    ReadPass {
        response: FetchResponse {
            error_code: 0,
            session_id: 0,
            responses,
            ..Default::default()
        },
        bytes: total,
        has_error,
        needs_log,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use strom_protocol::messages::fetch_request::FetchPartition;
    use strom_protocol::records::{BatchBuilder, Compression};

    use super::*;
    use crate::handlers::create_topics::tests::{create, test_broker};

    /// Fetch v12 (topics by name) of partition 0 of `topic` from offset 0, waiting for one byte.
    fn long_poll_request(topic: &str, max_wait_ms: i32) -> FetchRequest {
        FetchRequest {
            replica_id: -1,
            max_wait_ms,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                topic: topic.into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    partition_max_bytes: 1 << 20,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn one_record() -> Bytes {
        let mut batch = BatchBuilder::new(0, Compression::None, 0);
        batch.push(0, None, Some(Bytes::from_static(b"v")), Vec::new());
        batch.build()
    }

    async fn append(partition: &Arc<Partition>) {
        let partition = Arc::clone(partition);
        tokio::task::spawn_blocking(move || partition.append_as_leader(&one_record(), 0))
            .await
            .expect("append task")
            .expect("append");
    }

    /// Waits (bounded) until a request subscribed to `partition`'s high watermark.
    async fn until_watched(partition: &Partition) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while partition.waiters() == 0 {
            assert!(Instant::now() < deadline, "the fetch never started waiting");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn records_of(response: &FetchResponse) -> usize {
        response.responses[0].partitions[0]
            .records
            .as_ref()
            .map_or(0, Bytes::len)
    }

    #[tokio::test]
    async fn a_long_poll_is_not_woken_by_appends_to_other_partitions() {
        let (_dir, broker) = test_broker().await;
        create(&broker, &[("a", 1, &[]), ("b", 1, &[])], false).await;
        let a = broker.partitions.get("a", 0).expect("a-0");
        let b = broker.partitions.get("b", 0).expect("b-0");
        let fetch = tokio::spawn({
            let broker = Arc::clone(&broker);
            async move { long_poll(&broker, long_poll_request("a", 300), 12).await }
        });
        until_watched(&a).await;
        let mut appended_while_waiting = 0;
        while !fetch.is_finished() {
            append(&b).await;
            appended_while_waiting += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (response, wakeups) = fetch.await.expect("fetch task");
        assert!(appended_while_waiting > 0);
        assert_eq!(wakeups, 0, "woken by {appended_while_waiting} appends to b");
        assert_eq!(records_of(&response), 0);
        assert_eq!(response.responses[0].partitions[0].error_code, 0);
    }

    #[tokio::test]
    async fn a_long_poll_returns_once_its_partition_has_data() {
        let (_dir, broker) = test_broker().await;
        create(&broker, &[("a", 1, &[])], false).await;
        let a = broker.partitions.get("a", 0).expect("a-0");
        let fetch = tokio::spawn({
            let broker = Arc::clone(&broker);
            async move { long_poll(&broker, long_poll_request("a", 60_000), 12).await }
        });
        until_watched(&a).await;
        append(&a).await;
        let (response, wakeups) = tokio::time::timeout(Duration::from_secs(30), fetch)
            .await
            .expect("the fetch returned before its max wait")
            .expect("fetch task");
        assert_eq!(wakeups, 1);
        assert!(records_of(&response) > 0);
        assert_eq!(response.responses[0].partitions[0].high_watermark, 1);
    }
}
