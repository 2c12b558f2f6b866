//! Hostile request bodies behind well-formed headers: for every API the broker advertises in
//! ApiVersions and every version of it, correctly framed requests carry pseudo-random bodies,
//! runs of 0xff and huge array counts, each on its own connection. The broker must answer
//! (echoing the correlation id) or close the connection, never panic, keep serving a connection
//! opened before the barrage, and serve a regular rdkafka producer and consumer afterwards.
//!
//! Deterministic: every body comes from an xorshift generator seeded by its case.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::raw::{connect, expect_response, request_frame};
use common::StromProcess;
use strom_protocol::messages::request_header_version;
use strom_protocol::ErrorCode;

const API_VERSIONS: i16 = 18;
/// Random bodies per (API key, version).
const RANDOM_BODIES: u64 = 8;
/// Longest random body.
const MAX_RANDOM_LEN: u64 = 200;
/// How long one case waits for an answer or a close. Long polls (Fetch, JoinGroup) may
/// legitimately stay silent; they are simply dropped.
const CASE_DEADLINE: Duration = Duration::from_millis(400);
/// Concurrent connections.
const WORKERS: usize = 4;
/// Bodies larger than this are not read to their end (nothing here asks for large data).
const MAX_READ: usize = 1 << 20;

/// A tiny deterministic PRNG (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Spread the seed so neighbouring cases differ from the first byte on; never zero.
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

/// One request to send: which API, which version, what body.
struct Case {
    api_key: i16,
    version: i16,
    correlation_id: i32,
    body: Vec<u8>,
}

/// What the broker did with one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Answered,
    Closed,
    Silent,
}

/// Parses a v0 ApiVersions response body (after the correlation id) into (key, min, max).
fn parse_api_versions_v0(body: &[u8]) -> Vec<(i16, i16, i16)> {
    let error_code = i16::from_be_bytes([body[0], body[1]]);
    assert_eq!(
        error_code,
        ErrorCode::None.code(),
        "ApiVersions v0 error code"
    );
    let count = i32::from_be_bytes(body[2..6].try_into().expect("4 bytes"));
    let count = usize::try_from(count).expect("non-negative array length");
    (0..count)
        .map(|i| {
            let at = 6 + i * 6;
            let field =
                |offset: usize| i16::from_be_bytes([body[at + offset], body[at + offset + 1]]);
            (field(0), field(2), field(4))
        })
        .collect()
}

/// The hostile bodies for one (API key, version).
fn bodies(api_key: i16, version: i16) -> Vec<Vec<u8>> {
    let seed_base = (u64::from(api_key as u16) << 32) | (u64::from(version as u16) << 16);
    let mut bodies: Vec<Vec<u8>> = (0..RANDOM_BODIES)
        .map(|case| {
            let mut rng = XorShift::new(seed_base | case);
            let len = usize::try_from(rng.next() % MAX_RANDOM_LEN).expect("fits");
            rng.bytes(len)
        })
        .collect();
    bodies.push(Vec::new());
    for len in [1, 6, 64, 199] {
        bodies.push(vec![0xff; len]);
    }
    let huge_count = [0x7f, 0xff, 0xff, 0xff];
    // Classic array count up front, after a short string, and after a few i32 fields.
    bodies.push(huge_count.repeat(8));
    let mut after_string = vec![0x00, 0x01, b'a'];
    after_string.extend(huge_count.repeat(4));
    bodies.push(after_string);
    let mut after_fields = vec![0; 12];
    after_fields.extend(huge_count.repeat(4));
    bodies.push(after_fields);
    // Compact (uvarint) lengths: ~2^31 and the largest u32, up front and after a compact string.
    bodies.push([0xfe, 0xff, 0xff, 0xff, 0x07].repeat(4));
    bodies.push([0xff, 0xff, 0xff, 0xff, 0x0f].repeat(4));
    let mut after_compact_string = vec![0x02, b'a'];
    after_compact_string.extend([0xfe, 0xff, 0xff, 0xff, 0x07].repeat(4));
    bodies.push(after_compact_string);
    // A huge count followed by a little real data, so decoding starts before running out.
    let mut with_tail = huge_count.to_vec();
    with_tail.extend(XorShift::new(seed_base | 0xffff).bytes(48));
    bodies.push(with_tail);
    bodies
}

/// Sends one case on a fresh connection and waits (briefly) for an answer or a close.
fn run_case(broker: &StromProcess, case: &Case) -> Result<Verdict, String> {
    let flexible = request_header_version(case.api_key, case.version) >= 2;
    let frame = request_frame(
        case.api_key,
        case.version,
        case.correlation_id,
        flexible,
        &case.body,
    );
    let mut stream = connect(broker);
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| format!("set read timeout: {e}"))?;
    match stream.write_all(&frame) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
            return Ok(Verdict::Closed)
        }
        Err(e) => return Err(format!("write failed: {e}")),
    }
    read_verdict(
        &mut stream,
        case.correlation_id,
        Instant::now() + CASE_DEADLINE,
    )
}

/// Reads until a full response, a close, or the deadline.
fn read_verdict(
    stream: &mut TcpStream,
    correlation_id: i32,
    until: Instant,
) -> Result<Verdict, String> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if received.len() >= 8 {
            let echoed = i32::from_be_bytes(received[4..8].try_into().expect("4 bytes"));
            if echoed != correlation_id {
                return Err(format!(
                    "response carries correlation id {echoed}, expected {correlation_id}"
                ));
            }
            let size = i32::from_be_bytes(received[0..4].try_into().expect("4 bytes"));
            let size =
                usize::try_from(size).map_err(|_| format!("negative response size {size}"))?;
            if received.len() >= 4 + size || received.len() >= MAX_READ {
                return Ok(Verdict::Answered);
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) if received.is_empty() => return Ok(Verdict::Closed),
            Ok(0) => return Err("connection closed in the middle of a response".into()),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                if Instant::now() >= until {
                    return Ok(Verdict::Silent);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) && received.is_empty() =>
            {
                return Ok(Verdict::Closed)
            }
            Err(e) => return Err(format!("read error: {e}")),
        }
    }
}

/// CRC-32C (Castagnoli), bit by bit: enough for a few test batches.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A magic-v2 batch holding one record (value "x") whose header claims `last_offset_delta` and
/// `record_count`, with a valid CRC so that only those claims are wrong.
fn batch_claiming(last_offset_delta: i32, record_count: i32) -> Vec<u8> {
    let record = [0x0e, 0, 0, 0, 0x01, 0x02, b'x', 0];
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let batch_length = i32::try_from(61 - 12 + record.len()).expect("fits");
    batch.extend_from_slice(&batch_length.to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&[0; 4]); // crc, filled in below
    batch.extend_from_slice(&0i16.to_be_bytes()); // attributes
    batch.extend_from_slice(&last_offset_delta.to_be_bytes());
    let now = common::now_millis();
    batch.extend_from_slice(&now.to_be_bytes()); // base timestamp
    batch.extend_from_slice(&now.to_be_bytes()); // max timestamp
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&record_count.to_be_bytes());
    batch.extend_from_slice(&record);
    let crc = crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// A classic (non-flexible) string.
fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&i16::try_from(text.len()).expect("fits").to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Sends a Produce v3 of `batch` to partition 0 of `topic`; returns the partition's error code.
fn produce_v3(broker: &StromProcess, topic: &str, batch: &[u8], correlation_id: i32) -> i16 {
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    body.extend_from_slice(&1i16.to_be_bytes()); // acks
    body.extend_from_slice(&5_000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    put_string(&mut body, topic);
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&0i32.to_be_bytes()); // partition 0
    body.extend_from_slice(&i32::try_from(batch.len()).expect("fits").to_be_bytes());
    body.extend_from_slice(batch);
    let mut stream = connect(broker);
    stream
        .write_all(&request_frame(0, 3, correlation_id, false, &body))
        .expect("write Produce");
    let response = expect_response(&mut stream, broker, correlation_id);
    // [topic count i32][name][partition count i32][index i32][error code i16]...
    let at = 4 + 2 + topic.len() + 4 + 4;
    i16::from_be_bytes([response[at], response[at + 1]])
}

/// Sends a CreateTopics v0 for one topic; returns its error code.
fn create_topic_v0(
    broker: &StromProcess,
    topic: &str,
    partitions: i32,
    correlation_id: i32,
) -> i16 {
    let mut body = Vec::new();
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    put_string(&mut body, topic);
    body.extend_from_slice(&partitions.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes()); // replication factor
    body.extend_from_slice(&0i32.to_be_bytes()); // no assignments
    body.extend_from_slice(&0i32.to_be_bytes()); // no configs
    body.extend_from_slice(&5_000i32.to_be_bytes()); // timeout
    let mut stream = connect(broker);
    stream
        .write_all(&request_frame(19, 0, correlation_id, false, &body))
        .expect("write CreateTopics");
    let response = expect_response(&mut stream, broker, correlation_id);
    // [topic count i32][name][error code i16]
    let at = 4 + 2 + topic.len();
    i16::from_be_bytes([response[at], response[at + 1]])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_for_every_advertised_api_leave_the_broker_serving() {
    let started = Instant::now();
    let mut broker = StromProcess::start(&[]);

    // A connection opened before the barrage, which must still be served after it.
    let mut bystander = connect(&broker);
    bystander
        .write_all(&request_frame(API_VERSIONS, 0, 1, false, &[]))
        .expect("write ApiVersions");
    let apis = parse_api_versions_v0(&expect_response(&mut bystander, &broker, 1));
    assert!(apis.len() > 10, "advertised APIs: {apis:?}");

    let mut cases = Vec::new();
    for &(api_key, min, max) in &apis {
        for version in min..=max {
            for body in bodies(api_key, version) {
                let correlation_id = i32::try_from(cases.len()).expect("fits") + 1000;
                cases.push(Case {
                    api_key,
                    version,
                    correlation_id,
                    body,
                });
            }
        }
    }

    let next = AtomicUsize::new(0);
    let verdicts = Mutex::new(Vec::with_capacity(cases.len()));
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(index) else {
                    return;
                };
                match run_case(&broker, case) {
                    Ok(verdict) => verdicts
                        .lock()
                        .expect("verdicts")
                        .push((case.api_key, verdict)),
                    Err(error) => failures.lock().expect("failures").push(format!(
                        "api {} v{} body {:02x?}: {error}",
                        case.api_key, case.version, case.body
                    )),
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failures");
    assert!(
        failures.is_empty(),
        "{} of {} cases misbehaved, first: {:?}\n--- broker log ---\n{}",
        failures.len(),
        cases.len(),
        &failures[..failures.len().min(5)],
        broker.log_contents()
    );
    let verdicts = verdicts.into_inner().expect("verdicts");
    let count = |wanted: Verdict| verdicts.iter().filter(|(_, v)| *v == wanted).count();
    eprintln!(
        "{} cases: {} answered, {} closed, {} silent (long polls) in {:?}",
        verdicts.len(),
        count(Verdict::Answered),
        count(Verdict::Closed),
        count(Verdict::Silent),
        started.elapsed()
    );

    broker.assert_running();
    let log = broker.log_contents();
    assert!(
        !log.contains("panicked"),
        "a request made the broker panic\n--- broker log ---\n{log}"
    );

    // The connection opened before the barrage is still served.
    bystander
        .write_all(&request_frame(API_VERSIONS, 0, 2, false, &[]))
        .expect("write ApiVersions again");
    assert_eq!(
        parse_api_versions_v0(&expect_response(&mut bystander, &broker, 2)),
        apis
    );

    // And a regular client can still produce and consume.
    broker.assert_serves_rdkafka("after-hostile-frames").await;
}

#[test]
fn hostile_claims_in_well_formed_requests_get_kafka_error_codes() {
    let mut broker = StromProcess::start(&[]);

    // Two billion partitions: refused as a whole, nothing created.
    assert_eq!(
        create_topic_v0(&broker, "two-billion", i32::MAX, 1),
        ErrorCode::PolicyViolation.code()
    );
    assert!(!broker.topic_names().contains("two-billion"));

    assert_eq!(create_topic_v0(&broker, "claims", 1, 2), 0);
    // A last offset delta of i32::MAX (one more overflows an i32), and record counts the batch's
    // data does not hold: INVALID_RECORD, and the log does not move.
    for (correlation_id, (last_offset_delta, record_count)) in
        (10..).zip([(i32::MAX, i32::MAX), (i32::MAX - 1, i32::MAX), (1, 2)])
    {
        let batch = batch_claiming(last_offset_delta, record_count);
        assert_eq!(
            produce_v3(&broker, "claims", &batch, correlation_id),
            ErrorCode::InvalidRecord.code(),
            "delta {last_offset_delta}, count {record_count}"
        );
    }
    assert_eq!(broker.watermarks("claims", 0), (0, 0));
    assert_eq!(produce_v3(&broker, "claims", &batch_claiming(0, 1), 20), 0);
    assert_eq!(broker.watermarks("claims", 0), (0, 1));

    // Clients cannot write into the group coordinator's topic.
    assert_eq!(
        produce_v3(&broker, "__consumer_offsets", &batch_claiming(0, 1), 21),
        ErrorCode::InvalidTopicException.code()
    );

    broker.assert_running();
    let log = broker.log_contents();
    assert!(!log.contains("panicked"), "--- broker log ---\n{log}");
}
