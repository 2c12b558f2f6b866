//! Hand-built Kafka protocol frames over a plain TcpStream, for tests that must not depend on
//! the protocol crate or rdkafka: request framing, reading responses with a deadline.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::StromProcess;

/// Bound for one raw read/connect.
pub const IO_DEADLINE: Duration = Duration::from_secs(10);

/// Builds a request frame: size, api_key, api_version, correlation_id, client_id (i16 string),
/// optionally an empty tagged-field section (request header v2), then `body`.
pub fn request_frame(
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    flexible_header: bool,
    body: &[u8],
) -> Vec<u8> {
    let client_id = b"raw-test";
    let mut payload = Vec::new();
    payload.extend_from_slice(&api_key.to_be_bytes());
    payload.extend_from_slice(&api_version.to_be_bytes());
    payload.extend_from_slice(&correlation_id.to_be_bytes());
    payload.extend_from_slice(&i16::try_from(client_id.len()).expect("fits").to_be_bytes());
    payload.extend_from_slice(client_id);
    if flexible_header {
        payload.push(0); // no tagged fields
    }
    payload.extend_from_slice(body);
    let mut frame = Vec::with_capacity(payload.len() + 4);
    frame.extend_from_slice(&i32::try_from(payload.len()).expect("fits").to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

pub fn connect(broker: &StromProcess) -> TcpStream {
    let stream =
        TcpStream::connect_timeout(&broker.addr(), IO_DEADLINE).expect("connect to broker");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set read timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// What the broker did with a connection within the deadline.
#[derive(Debug)]
pub enum Outcome {
    /// A full response frame (without its size prefix).
    Response(Vec<u8>),
    /// The broker closed (or reset) the connection.
    Closed,
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` if the peer closed first.
pub fn read_exact_until(
    stream: &mut TcpStream,
    buf: &mut [u8],
    until: Instant,
) -> Result<bool, String> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                if Instant::now() >= until {
                    return Err(format!(
                        "no answer and no close within deadline ({filled} bytes read)"
                    ));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(format!("read error: {e}")),
        }
    }
    Ok(true)
}

/// Waits for one response frame or the connection closing.
pub fn next_outcome(stream: &mut TcpStream) -> Result<Outcome, String> {
    let until = Instant::now() + IO_DEADLINE;
    let mut size = [0u8; 4];
    if !read_exact_until(stream, &mut size, until)? {
        return Ok(Outcome::Closed);
    }
    let size = usize::try_from(i32::from_be_bytes(size))
        .map_err(|_| "negative response size".to_string())?;
    assert!(size < 1 << 20, "implausible response size {size}");
    let mut body = vec![0u8; size];
    if !read_exact_until(stream, &mut body, until)? {
        return Err("connection closed in the middle of a response".into());
    }
    Ok(Outcome::Response(body))
}

/// Reads one response and checks its correlation id; returns the body after the header.
pub fn expect_response(
    stream: &mut TcpStream,
    broker: &StromProcess,
    correlation_id: i32,
) -> Vec<u8> {
    match next_outcome(stream) {
        Ok(Outcome::Response(body)) => {
            let got = i32::from_be_bytes(body[0..4].try_into().expect("4 bytes"));
            assert_eq!(got, correlation_id, "correlation id echoed");
            body[4..].to_vec()
        }
        other => panic!(
            "expected a response, got {other:?}\n--- broker log ---\n{}",
            broker.log_contents()
        ),
    }
}
