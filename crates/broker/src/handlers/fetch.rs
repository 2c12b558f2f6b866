//! Fetch (key 1): reads record batches from partition logs, with long polling.
//!
//! Data path: for each requested partition the log returns whole batches, starting with the batch
//! that contains the fetch offset and ending before the high watermark (the log's, which is also
//! the `high_watermark` reported), as one `Bytes` read from the
//! segment file; the response encoder carries those bytes to the socket without copying them. Limits
//! follow Kafka: `max_bytes` for the response and `partition_max_bytes` per partition, except that
//! the first batch found is always returned whole (KIP-74) so a large record can never stall a
//! consumer; `max_bytes` itself is capped at Kafka's default `fetch.max.bytes`. If fewer than
//! `min_bytes` are available the request waits (up to `max_wait_ms`) for
//! the high watermark to move, woken by the partition registry's `data_arrived` signal.
//!
//! Fetch sessions (KIP-227) are not kept: every response carries session id 0, which tells clients
//! to send full fetch requests. With no transactions yet, the last stable offset is the high
//! watermark for both isolation levels.

use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use strom_protocol::messages::fetch_request::{FetchRequest, FetchTopic};
use strom_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use tokio::time::Instant;

use crate::state::Broker;

const UNKNOWN_TOPIC_ID: i16 = 100;
const READ_COMMITTED: i8 = 1;
/// Fetch v13 and later name topics by id.
const FIRST_VERSION_WITH_TOPIC_IDS: i16 = 13;

pub async fn handle(broker: &Broker, request: FetchRequest, version: i16) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        let mut woken = pin!(broker.partitions.data_arrived.notified());
        woken.as_mut().enable();
        let read_at = high_watermarks(broker, &request, version);
        let (response, bytes, has_error) = read_once(broker, &request, version);
        if bytes >= min_bytes || has_error || Instant::now() >= deadline {
            return response;
        }
        // Every append wakes every waiting fetch: read again only once the high watermark of one of
        // the requested partitions has moved (or the partition has gone), not for appends elsewhere.
        loop {
            if tokio::time::timeout_at(deadline, woken.as_mut())
                .await
                .is_err()
            {
                return read_once(broker, &request, version).0;
            }
            woken.set(broker.partitions.data_arrived.notified());
            woken.as_mut().enable();
            if high_watermarks(broker, &request, version) != read_at {
                break;
            }
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

/// The high watermark of every requested partition (`None` where none is hosted).
fn high_watermarks(broker: &Broker, request: &FetchRequest, version: i16) -> Vec<Option<i64>> {
    let image = broker.image();
    request
        .topics
        .iter()
        .flat_map(|topic| {
            let name = topic_name(&image, topic, version);
            topic.partitions.iter().map(move |wanted| {
                let partition = broker.led_partition(name.as_deref()?, wanted.partition)?;
                let high_watermark = partition.log().high_watermark();
                Some(high_watermark)
            })
        })
        .collect()
}

/// One pass over the requested partitions: the response, the record bytes in it, and whether any
/// partition reported an error (which makes the fetch return at once, as in Kafka).
fn read_once(
    broker: &Broker,
    request: &FetchRequest,
    version: i16,
) -> (FetchResponse, usize, bool) {
    let image = broker.image();
    // The broker's `fetch.max.bytes` caps the request's `max_bytes`: a request asking for 2 GiB
    // (or naming one partition many times) must not make us read that much.
    let mut remaining = usize::try_from(request.max_bytes)
        .unwrap_or(0)
        .min(usize::try_from(broker.config.fetch_max_bytes).unwrap_or(0));
    let mut total = 0usize;
    let mut has_error = false;
    let read_committed = request.isolation_level == READ_COMMITTED;

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
                        .and_then(|n| broker.led_partition(n, wanted.partition));
                    let Some(partition) = partition else {
                        data.error_code = match name.as_deref() {
                            None => UNKNOWN_TOPIC_ID,
                            Some(n) => broker.partition_not_hosted_error(n, wanted.partition),
                        };
                        has_error = true;
                        return data;
                    };
                    let log = partition.log();
                    let high_watermark = log.high_watermark();
                    data.high_watermark = high_watermark;
                    data.last_stable_offset = high_watermark;
                    data.log_start_offset = log.log_start_offset();
                    let limit = remaining.min(wanted.partition_max_bytes.max(0) as usize);
                    let min_one_message = total == 0;
                    if limit == 0 && !min_one_message {
                        return data;
                    }
                    match log.read(wanted.fetch_offset, limit, high_watermark, min_one_message) {
                        Ok(records) => {
                            remaining = remaining.saturating_sub(records.len());
                            total += records.len();
                            data.records = Some(records);
                        }
                        Err(error) => {
                            data.error_code = error.kafka_error_code();
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

    let response = FetchResponse {
        error_code: 0,
        session_id: 0,
        responses,
        ..Default::default()
    };
    (response, total, has_error)
}
