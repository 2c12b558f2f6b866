//! One client connection: reads size-prefixed request frames, decodes the header and body, hands the
//! request to its handler and writes the response, one request at a time in order (as Kafka does: a
//! connection's next request is read only after the previous response is queued).
//!
//! Memory: before reading a frame's body, the connection reserves the frame's size from the
//! broker-wide request budget (`queued.max.request.bytes`, see [`crate::admission`]) and gives it
//! back as Kafka does: a Produce request once it has been handled, any other once it is decoded
//! (see [`handle_frame`]; responses are not counted). While the budget is spent the connection
//! does not read its socket. The body is read into a buffer of its own, so its memory goes as
//! soon as the request is done with it. Outside the budget a connection holds one read chunk
//! (64 KiB) of input that is not yet a whole frame.
//!
//! Hostile input never takes the broker down: a frame larger than `socket.request.max.bytes` or
//! smaller than a header closes the connection; a frame that fails to decode closes this
//! connection with a log line, leaving all others untouched. Those log lines are rate-limited per
//! kind of error ([`crate::log_limit`]), so a flood of bad frames cannot flood the log. A
//! connection that sends no complete request for `connections.max.idle.ms` (not counting time
//! spent waiting for request budget) is closed, as in Kafka.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use strom_protocol::codec::{get_i16, get_i32, Decode, Encode, Encoder};
use strom_protocol::messages::{
    api_versions_response::ApiVersionsResponse, request_header::RequestHeader,
    request_header_version, response_header::ResponseHeader, response_header_version, RequestBody,
};
use strom_protocol::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::admission::{RequestBudget, RequestPermit};
use crate::config::BrokerConfig;
use crate::handlers;
use crate::log_limit::LogRateLimiter;
use crate::state::Broker;

/// The smallest frame that can hold a request header: api key, version, correlation id.
const MIN_FRAME: usize = 8;
/// How much input a connection reads at a time before it knows the frame size.
const READ_CHUNK: usize = 64 * 1024;

const PRODUCE_KEY: i16 = 0;
const API_VERSIONS_KEY: i16 = 18;

/// Why a connection is being closed.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("frame size {0} outside 8..={1}")]
    BadFrameSize(i64, usize),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    BadRequest(String),
    #[error("no complete request read, or response written, within {0:?}")]
    Idle(std::time::Duration),
}

/// What all connections share: the request memory budget and the rate limits of the warnings
/// peers can provoke.
#[derive(Debug)]
pub struct ConnectionShared {
    request_budget: RequestBudget,
    warnings: ClosingWarnings,
}

impl ConnectionShared {
    pub fn from_config(config: &BrokerConfig) -> Arc<ConnectionShared> {
        Arc::new(ConnectionShared {
            request_budget: RequestBudget::from_config(config),
            warnings: ClosingWarnings::new(),
        })
    }

    /// Writes one "suppressed K similar warnings" line per kind of warning suppressed in a
    /// window that has ended by `now`.
    pub fn report_suppressed_warnings(&self, now: std::time::Instant) {
        self.warnings.report_suppressed(now);
    }
}

/// The kinds of "closing connection" warnings, each rate-limited on its own.
const WARNING_KINDS: [&str; 3] = ["bad frame size", "bad request", "i/o error"];

/// Rate limits of the warnings written when a peer's input closes its connection.
#[derive(Debug)]
struct ClosingWarnings {
    /// One limiter per entry of [`WARNING_KINDS`].
    limiters: [LogRateLimiter; WARNING_KINDS.len()],
}

impl ClosingWarnings {
    fn new() -> ClosingWarnings {
        ClosingWarnings {
            limiters: std::array::from_fn(|_| LogRateLimiter::for_peer_events()),
        }
    }

    /// Logs why a connection is being closed: a disconnect silently, an idle timeout at debug
    /// level, anything else as a warning, rate-limited per kind.
    fn log(&self, peer: SocketAddr, error: &ConnectionError) {
        let kind = match error {
            ConnectionError::Io(io) if is_disconnect(io) => return,
            ConnectionError::Idle(_) => {
                tracing::debug!(%peer, %error, "closing connection");
                return;
            }
            ConnectionError::BadFrameSize(..) => 0,
            ConnectionError::BadRequest(_) => 1,
            ConnectionError::Io(_) => 2,
        };
        let verdict = self.limiters[kind].check(std::time::Instant::now());
        report(WARNING_KINDS[kind], verdict.suppressed_before);
        if verdict.write {
            tracing::warn!(%peer, %error, "closing connection");
        }
    }

    fn report_suppressed(&self, now: std::time::Instant) {
        for (kind, limiter) in WARNING_KINDS.iter().zip(&self.limiters) {
            report(kind, limiter.take_suppressed(now));
        }
    }
}

/// Writes the summary of `suppressed` warnings of `kind`, if there were any.
fn report(kind: &str, suppressed: u64) {
    if suppressed > 0 {
        tracing::warn!(
            kind,
            suppressed,
            "closing connection: suppressed {suppressed} similar warnings"
        );
    }
}

/// Serves one connection accepted on the client listener named `listener` until the peer
/// closes it, it fails, or the broker shuts down.
pub async fn serve_connection(
    broker: Arc<Broker>,
    shared: Arc<ConnectionShared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    mut shutdown: watch::Receiver<bool>,
) {
    let max_frame = broker.config.socket_request_max_bytes.max(0) as usize;
    // How long a connection may take to deliver its next complete request, or to take in one
    // response, before it is closed (`connections.max.idle.ms`). Bounds a peer that trickles a
    // frame byte by byte or never reads what it asked for.
    let max_idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1) as u64);
    let mut pending = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => return,
            frame = read_frame(
                &mut stream,
                &mut pending,
                max_frame,
                max_idle,
                &shared.request_budget,
            ) => frame,
        };
        let result = match frame {
            Ok(None) => return,
            Ok(Some((frame, budget_share))) => {
                match handle_frame(&broker, frame, budget_share, peer, &listener).await {
                    Ok(Some(response)) => {
                        tokio::time::timeout(max_idle, write_chunks(&mut stream, &response))
                            .await
                            .unwrap_or(Err(ConnectionError::Idle(max_idle)))
                    }
                    Ok(None) => Ok(()),
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            shared.warnings.log(peer, &error);
            return;
        }
    }
}

fn is_disconnect(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted
    )
}

/// Reads one size-prefixed frame together with its share of the request budget; `None` on a
/// clean end of stream between frames. The whole frame must arrive within `max_idle`, not
/// counting the time spent waiting for budget (the socket is not read meanwhile).
async fn read_frame(
    stream: &mut TcpStream,
    pending: &mut BytesMut,
    max_frame: usize,
    max_idle: Duration,
    budget: &RequestBudget,
) -> Result<Option<(Bytes, RequestPermit)>, ConnectionError> {
    let mut deadline = Instant::now() + max_idle;
    while pending.len() < 4 {
        pending.reserve(READ_CHUNK);
        if read_by(stream, pending, deadline, max_idle).await? == 0 {
            if pending.is_empty() {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    let size = i32::from_be_bytes([pending[0], pending[1], pending[2], pending[3]]);
    let size = match usize::try_from(size) {
        Ok(size) if (MIN_FRAME..=max_frame).contains(&size) => size,
        _ => return Err(ConnectionError::BadFrameSize(i64::from(size), max_frame)),
    };
    let waiting_since = Instant::now();
    let budget_share = budget.reserve(size).await;
    deadline += waiting_since.elapsed();
    pending.advance(4);
    if pending.len() >= size {
        return Ok(Some((pending.split_to(size).freeze(), budget_share)));
    }
    // The reserved budget pays for the whole frame; read the rest straight into it.
    let mut frame = BytesMut::with_capacity(size);
    frame.extend_from_slice(pending);
    pending.clear();
    while frame.len() < size {
        let missing = size - frame.len();
        if read_by(stream, &mut (&mut frame).limit(missing), deadline, max_idle).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(Some((frame.freeze(), budget_share)))
}

/// One read into `buffer`, failing as idle if nothing arrives by `deadline`; returns the bytes
/// read (0 at end of stream).
async fn read_by(
    stream: &mut TcpStream,
    buffer: &mut impl BufMut,
    deadline: Instant,
    max_idle: Duration,
) -> Result<usize, ConnectionError> {
    match tokio::time::timeout_at(deadline, stream.read_buf(buffer)).await {
        Ok(read) => Ok(read?),
        Err(_) => Err(ConnectionError::Idle(max_idle)),
    }
}

async fn write_chunks(stream: &mut TcpStream, chunks: &[Bytes]) -> Result<(), ConnectionError> {
    if let [single] = chunks {
        return Ok(stream.write_all(single).await?);
    }
    let mut chunk_index = 0;
    let mut offset = 0;
    while chunk_index < chunks.len() {
        let slices: Vec<IoSlice<'_>> =
            std::iter::once(IoSlice::new(&chunks[chunk_index][offset..]))
                .chain(chunks[chunk_index + 1..].iter().map(|c| IoSlice::new(c)))
                .take(64)
                .collect();
        let mut written = stream.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
        }
        while chunk_index < chunks.len() && written > 0 {
            let left = chunks[chunk_index].len() - offset;
            if written >= left {
                written -= left;
                chunk_index += 1;
                offset = 0;
            } else {
                offset += written;
                written = 0;
            }
        }
    }
    Ok(())
}

/// Decodes, handles and encodes one request; `None` when no response is due (produce with acks=0).
///
/// The frame's share of the request budget is given back as Kafka gives back its request
/// buffers: a Produce request (whose records are slices of the frame) keeps it until it has
/// been handled, any other request once it is decoded. Requests that wait inside their handler
/// (JoinGroup and SyncGroup until the rebalance completes, Fetch up to its `max_wait_ms`) must
/// not hold budget, or a client could stop every connection's reading for as long as it likes.
async fn handle_frame(
    broker: &Arc<Broker>,
    frame: Bytes,
    budget_share: RequestPermit,
    peer: SocketAddr,
    listener: &Arc<str>,
) -> Result<Option<Vec<Bytes>>, ConnectionError> {
    let mut peek = frame.clone();
    let bad = |e: strom_protocol::codec::DecodeError| ConnectionError::BadRequest(e.to_string());
    let api_key = get_i16(&mut peek).map_err(bad)?;
    let api_version = get_i16(&mut peek).map_err(bad)?;
    let correlation_id = get_i32(&mut peek).map_err(bad)?;
    drop(peek);

    let Some(supported) = handlers::supported_versions(api_key) else {
        return Err(ConnectionError::BadRequest(format!(
            "unsupported API key {api_key}"
        )));
    };
    if !(supported.0..=supported.1).contains(&api_version) {
        if api_key == API_VERSIONS_KEY {
            // KIP-511: answer with a v0 body that lists what we support, so the client can retry.
            let body = ApiVersionsResponse {
                error_code: ErrorCode::UnsupportedVersion.code(),
                api_keys: handlers::api_versions::supported_api_keys(),
                ..Default::default()
            };
            return encode_response(correlation_id, 0, |out| body.encode(out, 0)).map(Some);
        }
        return Err(ConnectionError::BadRequest(format!(
            "unsupported version {api_version} of API key {api_key}"
        )));
    }

    let mut body_buf = frame;
    let header = RequestHeader::decode(&mut body_buf, request_header_version(api_key, api_version))
        .map_err(bad)?;
    let request = RequestBody::decode(api_key, api_version, &mut body_buf).map_err(bad)?;
    drop(body_buf);
    let budget_share = (api_key == PRODUCE_KEY).then_some(budget_share);
    let context = handlers::RequestContext {
        api_version,
        client_id: header.client_id,
        peer,
        listener: listener.clone(),
    };
    let response = handlers::handle(broker, &context, request).await;
    drop(budget_share);
    let Some(response) = response else {
        return Ok(None);
    };
    let header_version = response_header_version(api_key, api_version);
    encode_response(correlation_id, header_version, |out| {
        response.encode(out, api_version)
    })
    .map(Some)
}

/// Encodes a response frame: size prefix, response header, body. A response too large for its
/// i32 size prefix (a fetch of more than 2 GiB) closes the connection instead of lying about it.
fn encode_response(
    correlation_id: i32,
    header_version: i16,
    body: impl FnOnce(&mut Encoder),
) -> Result<Vec<Bytes>, ConnectionError> {
    let mut out = Encoder::new();
    let header = ResponseHeader { correlation_id };
    header.encode(&mut out, header_version);
    body(&mut out);
    let size = i32::try_from(out.len()).map_err(|_| {
        ConnectionError::BadRequest(format!(
            "response of {} bytes exceeds the i32 size prefix",
            out.len()
        ))
    })?;
    let mut chunks = out.into_chunks();
    chunks.insert(0, Bytes::copy_from_slice(&size.to_be_bytes()));
    Ok(chunks)
}
