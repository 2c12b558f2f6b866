//! One client connection: reads size-prefixed request frames, decodes the header and body, hands the
//! request to its handler and writes the response, one request at a time in order (as Kafka does: a
//! connection's next request is read only after the previous response is queued).
//!
//! Hostile input never takes the broker down: a frame larger than `socket.request.max.bytes` or
//! smaller than a header closes the connection; buffers grow only as bytes actually arrive; a frame
//! that fails to decode closes this connection with a log line, leaving all others untouched. A
//! connection that sends no complete request for `connections.max.idle.ms` is closed, as in Kafka.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use strom_protocol::codec::{get_i16, get_i32, Decode, Encode, Encoder};
use strom_protocol::messages::{
    api_versions_response::ApiVersionsResponse, request_header::RequestHeader,
    request_header_version, response_header::ResponseHeader, response_header_version, RequestBody,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::handlers;
use crate::state::Broker;

/// The smallest frame that can hold a request header: api key, version, correlation id.
const MIN_FRAME: usize = 8;
/// The smallest step by which a read buffer grows.
const READ_CHUNK: usize = 64 * 1024;

const API_VERSIONS_KEY: i16 = 18;
const UNSUPPORTED_VERSION: i16 = 35;

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

pub async fn serve_connection(
    broker: Arc<Broker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let max_frame = broker.config.socket_request_max_bytes.max(0) as usize;
    // How long a connection may take to deliver its next complete request, or to take in one
    // response, before it is closed (`connections.max.idle.ms`). Bounds a peer that trickles a
    // frame byte by byte or never reads what it asked for.
    let max_idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1) as u64);
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => return,
            frame = tokio::time::timeout(
                max_idle,
                read_frame(&mut stream, &mut buffer, max_frame),
            ) => frame.unwrap_or(Err(ConnectionError::Idle(max_idle))),
        };
        let result = match frame {
            Ok(None) => return,
            Ok(Some(frame)) => match handle_frame(&broker, frame, peer).await {
                Ok(Some(response)) => {
                    tokio::time::timeout(max_idle, write_chunks(&mut stream, &response))
                        .await
                        .unwrap_or(Err(ConnectionError::Idle(max_idle)))
                }
                Ok(None) => Ok(()),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            match error {
                ConnectionError::Io(ref io) if is_disconnect(io) => {}
                ConnectionError::Idle(_) => tracing::debug!(%peer, %error, "closing connection"),
                _ => tracing::warn!(%peer, %error, "closing connection"),
            }
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

/// Reads one size-prefixed frame; `None` on a clean end of stream between frames.
async fn read_frame(
    stream: &mut TcpStream,
    buffer: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<Bytes>, ConnectionError> {
    loop {
        if buffer.len() >= 4 {
            let size = i32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
            if size < MIN_FRAME as i32 || size as usize > max_frame {
                return Err(ConnectionError::BadFrameSize(i64::from(size), max_frame));
            }
            let total = 4 + size as usize;
            if buffer.len() >= total {
                buffer.advance(4);
                return Ok(Some(buffer.split_to(size as usize).freeze()));
            }
            // Grow geometrically with what has actually arrived, never by what the size claims:
            // a hostile size costs at most twice the bytes really sent.
            buffer.reserve((total - buffer.len()).min(buffer.len().max(READ_CHUNK)));
        } else {
            buffer.reserve(READ_CHUNK);
        }
        if stream.read_buf(buffer).await? == 0 {
            if buffer.is_empty() {
                return Ok(None);
            }
            return Err(ConnectionError::Io(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
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
async fn handle_frame(
    broker: &Broker,
    frame: Bytes,
    peer: SocketAddr,
) -> Result<Option<Vec<Bytes>>, ConnectionError> {
    let mut peek = frame.clone();
    let bad = |e: strom_protocol::codec::DecodeError| ConnectionError::BadRequest(e.to_string());
    let api_key = get_i16(&mut peek).map_err(bad)?;
    let api_version = get_i16(&mut peek).map_err(bad)?;
    let correlation_id = get_i32(&mut peek).map_err(bad)?;

    let Some(supported) = handlers::supported_versions(api_key) else {
        return Err(ConnectionError::BadRequest(format!(
            "unsupported API key {api_key}"
        )));
    };
    if !(supported.0..=supported.1).contains(&api_version) {
        if api_key == API_VERSIONS_KEY {
            // KIP-511: answer with a v0 body that lists what we support, so the client can retry.
            let body = ApiVersionsResponse {
                error_code: UNSUPPORTED_VERSION,
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
    let context = handlers::RequestContext {
        api_version,
        client_id: header.client_id,
        peer,
    };
    let Some(response) = handlers::handle(broker, &context, request).await else {
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
