//! Robustness of a `strom` process against malformed traffic on raw TCP connections: garbage,
//! oversized and negative frame sizes, truncated frames, unknown API keys and unsupported
//! versions. After each, the broker must still be up and serve a regular rdkafka client.
//! Frames are built by hand here on purpose (independent of the protocol crate).

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::raw::{connect, expect_response, next_outcome, request_frame, Outcome};
use common::{StromProcess, WAIT_DEADLINE};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use strom_protocol::ErrorCode;

const API_VERSIONS: i16 = 18;
const PRODUCE: i16 = 0;
const FETCH: i16 = 1;

/// Asserts the broker closes the connection (possibly after answering nothing).
fn assert_closed(stream: &mut TcpStream, broker: &StromProcess, what: &str) {
    match next_outcome(stream) {
        Ok(Outcome::Closed) => {}
        other => panic!(
            "{what}: expected the broker to close the connection, got {other:?}\n--- broker log ---\n{}",
            broker.log_contents()
        ),
    }
}

/// Writes `bytes`, tolerating the broker having already closed the connection.
fn write_tolerant(stream: &mut TcpStream, bytes: &[u8]) {
    match stream.write_all(bytes) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        Err(e) => panic!("write failed: {e}"),
    }
}

/// A regular rdkafka client can still produce and read back; `round` numbers the check.
async fn assert_healthy(broker: &mut StromProcess, round: i64) {
    broker.assert_running();
    let producer = broker.producer(&[]);
    let payload = format!("healthy {round}");
    let delivered = producer
        .send(
            FutureRecord::<(), _>::to("health")
                .partition(0)
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(error, _)| {
            panic!(
                "health produce {round} failed: {error}\n{}",
                broker.log_contents()
            )
        });
    assert_eq!(delivered.offset, round);
    let messages = broker.consume_n(
        "health",
        usize::try_from(round + 1).expect("fits"),
        WAIT_DEADLINE,
    );
    assert_eq!(
        messages[usize::try_from(round).expect("fits")].payload(),
        Some(payload.as_bytes())
    );
}

/// Parses a v0 ApiVersions response body (after the correlation id): error code and api keys.
fn parse_api_versions_v0(body: &[u8]) -> (i16, Vec<(i16, i16, i16)>) {
    let error_code = i16::from_be_bytes([body[0], body[1]]);
    let count = i32::from_be_bytes(body[2..6].try_into().expect("4 bytes"));
    let count = usize::try_from(count).expect("non-negative array length");
    let mut keys = Vec::with_capacity(count);
    for i in 0..count {
        let at = 6 + i * 6;
        let field = |offset: usize| i16::from_be_bytes([body[at + offset], body[at + offset + 1]]);
        keys.push((field(0), field(2), field(4)));
    }
    (error_code, keys)
}

#[tokio::test]
async fn api_versions_v0_by_hand() {
    let mut broker = StromProcess::start(&[]);
    let mut stream = connect(&broker);
    stream
        .write_all(&request_frame(API_VERSIONS, 0, 41, false, &[]))
        .expect("write");
    let body = expect_response(&mut stream, &broker, 41);
    let (error_code, keys) = parse_api_versions_v0(&body);
    assert_eq!(error_code, ErrorCode::None.code());
    for api in [PRODUCE, FETCH, API_VERSIONS] {
        assert!(
            keys.iter().any(|(key, _, _)| *key == api),
            "api key {api} not advertised: {keys:?}"
        );
    }
    for (key, min, max) in &keys {
        assert!(min <= max, "api {key}: min {min} > max {max}");
    }
    assert_healthy(&mut broker, 0).await;
}

#[tokio::test]
async fn unsupported_api_versions_version_gets_v0_error_response() {
    let mut broker = StromProcess::start(&[]);
    let mut stream = connect(&broker);
    // ApiVersions v3+ body: client_software_name, client_software_version (compact strings), no tags.
    let body = [&[4u8][..], b"raw", &[2u8][..], b"1", &[0u8][..]].concat();
    stream
        .write_all(&request_frame(API_VERSIONS, 99, 42, true, &body))
        .expect("write");
    let body = expect_response(&mut stream, &broker, 42);
    let (error_code, keys) = parse_api_versions_v0(&body);
    assert_eq!(error_code, ErrorCode::UnsupportedVersion.code());
    assert!(
        keys.iter()
            .any(|(key, min, _)| *key == API_VERSIONS && *min == 0),
        "ApiVersions must be listed in the error response: {keys:?}"
    );
    // The client can then retry with a supported version on the same connection.
    stream
        .write_all(&request_frame(API_VERSIONS, 0, 43, false, &[]))
        .expect("write");
    let body = expect_response(&mut stream, &broker, 43);
    assert_eq!(parse_api_versions_v0(&body).0, 0);
    assert_healthy(&mut broker, 0).await;
}

#[tokio::test]
async fn garbage_bytes_close_the_connection() {
    let mut broker = StromProcess::start(&[]);
    let mut stream = connect(&broker);
    // Read as a frame size this is ~1.2 GB: over any sane request limit.
    write_tolerant(&mut stream, b"GET / HTTP/1.1\r\nHost: strom\r\n\r\n");
    assert_closed(&mut stream, &broker, "HTTP request");
    assert_healthy(&mut broker, 0).await;

    // A small frame whose content is garbage.
    let mut stream = connect(&broker);
    let mut frame = 10i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0xFF, 0x7F, 0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF]);
    write_tolerant(&mut stream, &frame);
    assert!(
        next_outcome(&mut stream).is_ok(),
        "broker must answer or close"
    );
    assert_healthy(&mut broker, 1).await;
}

fn vm_peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmPeak:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmPeak in /proc status")
}

#[tokio::test]
async fn oversized_frame_is_refused_without_allocating() {
    let mut broker = StromProcess::start(&[]);
    assert_healthy(&mut broker, 0).await;
    let peak_before = vm_peak_kib(broker.pid());
    let mut stream = connect(&broker);
    let mut frame = 0x7fff_ffffi32.to_be_bytes().to_vec();
    frame.extend_from_slice(&request_frame(API_VERSIONS, 0, 1, false, &[])[4..]);
    write_tolerant(&mut stream, &frame);
    assert_closed(&mut stream, &broker, "frame of size 0x7fffffff");
    let peak_after = vm_peak_kib(broker.pid());
    assert!(
        peak_after.saturating_sub(peak_before) < 1536 * 1024,
        "broker address space grew from {peak_before} KiB to {peak_after} KiB: it allocated for the oversized frame"
    );
    assert_healthy(&mut broker, 1).await;

    let mut stream = connect(&broker);
    write_tolerant(&mut stream, &(-1i32).to_be_bytes());
    assert_closed(&mut stream, &broker, "frame of negative size");
    assert_healthy(&mut broker, 2).await;
}

#[tokio::test]
async fn truncated_frame_then_close_is_harmless() {
    let mut broker = StromProcess::start(&[]);
    for cut in [2usize, 4, 7, 12] {
        let mut stream = connect(&broker);
        let frame = request_frame(API_VERSIONS, 0, 5, false, &[]);
        write_tolerant(&mut stream, &frame[..cut.min(frame.len() - 1)]);
        stream.shutdown(Shutdown::Both).ok();
    }
    // A frame announcing 100 bytes followed by only 20, then a half-close.
    let mut stream = connect(&broker);
    let mut frame = 100i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0u8; 20]);
    write_tolerant(&mut stream, &frame);
    stream.shutdown(Shutdown::Write).ok();
    assert_closed(&mut stream, &broker, "truncated frame after half-close");
    assert_healthy(&mut broker, 0).await;
}

#[tokio::test]
async fn unknown_api_key_is_answered_or_closed() {
    let mut broker = StromProcess::start(&[]);
    let mut stream = connect(&broker);
    write_tolerant(&mut stream, &request_frame(9999, 0, 77, false, &[1, 2, 3]));
    match next_outcome(&mut stream) {
        Ok(Outcome::Closed) => {}
        Ok(Outcome::Response(body)) => {
            assert_eq!(
                i32::from_be_bytes(body[0..4].try_into().expect("4 bytes")),
                77
            );
        }
        Err(e) => panic!(
            "unknown api key: {e}\n--- broker log ---\n{}",
            broker.log_contents()
        ),
    }
    assert_healthy(&mut broker, 0).await;

    // An unsupported version of a known non-ApiVersions API: Kafka closes the connection.
    let mut stream = connect(&broker);
    write_tolerant(
        &mut stream,
        &request_frame(PRODUCE, 999, 78, true, &[0, 0, 0]),
    );
    assert!(
        next_outcome(&mut stream).is_ok(),
        "broker must answer or close"
    );
    assert_healthy(&mut broker, 1).await;
}

#[tokio::test]
async fn many_idle_connections_do_not_hurt() {
    let mut broker = StromProcess::start(&[]);
    let streams: Vec<TcpStream> = (0..200).map(|_| connect(&broker)).collect();
    assert_healthy(&mut broker, 0).await;
    drop(streams);
    assert_healthy(&mut broker, 1).await;
}

/// Reads an unsigned varint at `*at`, advancing it.
fn read_uvarint(body: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = body[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
        assert!(shift < 64, "varint too long");
    }
}

/// Skips a tagged-field section at `*at`.
fn skip_tagged_fields(body: &[u8], at: &mut usize) {
    let count = read_uvarint(body, at);
    for _ in 0..count {
        read_uvarint(body, at); // tag
        let size = usize::try_from(read_uvarint(body, at)).expect("fits");
        *at += size;
    }
}

fn read_i16(body: &[u8], at: &mut usize) -> i16 {
    let value = i16::from_be_bytes([body[*at], body[*at + 1]]);
    *at += 2;
    value
}

#[tokio::test]
async fn api_versions_v3_flexible_by_hand() {
    let mut broker = StromProcess::start(&[]);
    let mut stream = connect(&broker);
    let request_body = [&[9u8][..], b"strom-it", &[4u8][..], b"1.0", &[0u8][..]].concat();
    stream
        .write_all(&request_frame(API_VERSIONS, 3, 51, true, &request_body))
        .expect("write");
    // ApiVersions responses always use response header v0 (no tagged fields).
    let body = expect_response(&mut stream, &broker, 51);
    let mut at = 0;
    assert_eq!(
        read_i16(&body, &mut at),
        ErrorCode::None.code(),
        "error code"
    );
    let count = read_uvarint(&body, &mut at)
        .checked_sub(1)
        .expect("non-null compact array");
    let mut keys = Vec::new();
    for _ in 0..count {
        let key = read_i16(&body, &mut at);
        let min = read_i16(&body, &mut at);
        let max = read_i16(&body, &mut at);
        skip_tagged_fields(&body, &mut at);
        keys.push((key, min, max));
    }
    at += 4; // throttle_time_ms
    skip_tagged_fields(&body, &mut at);
    assert_eq!(at, body.len(), "response fully consumed");
    for api in [PRODUCE, FETCH, API_VERSIONS] {
        assert!(
            keys.iter().any(|(key, _, _)| *key == api),
            "api key {api} missing: {keys:?}"
        );
    }
    let api_versions = keys
        .iter()
        .find(|(key, _, _)| *key == API_VERSIONS)
        .expect("listed");
    assert!(
        api_versions.2 >= 3,
        "ApiVersions v3 answered but max is {}",
        api_versions.2
    );
    assert_healthy(&mut broker, 0).await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let mut broker = StromProcess::start(&[]);
    let mut stream = connect(&broker);
    let mut frames = Vec::new();
    for correlation_id in 100..120 {
        frames.extend_from_slice(&request_frame(API_VERSIONS, 0, correlation_id, false, &[]));
    }
    stream.write_all(&frames).expect("write pipelined requests");
    for correlation_id in 100..120 {
        let body = expect_response(&mut stream, &broker, correlation_id);
        assert_eq!(parse_api_versions_v0(&body).0, 0);
    }
    assert_healthy(&mut broker, 0).await;
}
