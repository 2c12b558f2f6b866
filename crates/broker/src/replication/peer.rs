//! A Kafka-protocol connection from this broker to another one (a follower's fetcher to its
//! leader): frames requests with the standard header, and reads responses with their size
//! bounded, so a misbehaving peer cannot make us allocate more than `max_frame_bytes`.
//! Hand-written (a few lines over the codec) because the Kafka client crates neither share our
//! codec's zero-copy record buffers nor let a broker name its own replica id in Fetch.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strom_protocol::codec::{Decode, Encode, Encoder};
use strom_protocol::messages::request_header::RequestHeader;
use strom_protocol::messages::response_header::ResponseHeader;
use strom_protocol::messages::{
    request_header_version, response_header_version, RequestBody, ResponseBody,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Why a call to a peer failed; the connection is dropped after any of them.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("connecting to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("connecting to {0}: timed out")]
    ConnectTimeout(String),
    #[error("talking to {address}: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    #[error("{0}: no response in time")]
    Timeout(String),
    #[error("{address} sent a frame of {size} bytes (at most {max} accepted)")]
    FrameTooLarge {
        address: String,
        size: i64,
        max: usize,
    },
    #[error("{address} sent an undecodable response: {detail}")]
    Malformed { address: String, detail: String },
}

/// One connection to a peer broker; requests go one at a time.
pub struct PeerConnection {
    address: String,
    stream: BufReader<TcpStream>,
    client_id: String,
    next_correlation_id: i32,
    max_frame_bytes: usize,
}

impl PeerConnection {
    /// Connects to `host:port` within `timeout`.
    pub async fn connect(
        host: &str,
        port: u16,
        client_id: String,
        max_frame_bytes: usize,
        timeout: Duration,
    ) -> Result<Self, PeerError> {
        let address = format!("{host}:{port}");
        let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| PeerError::ConnectTimeout(address.clone()))?
            .map_err(|source| PeerError::Connect {
                address: address.clone(),
                source,
            })?;
        // Small fetch requests and their answers must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok(Self {
            address,
            stream: BufReader::new(stream),
            client_id,
            next_correlation_id: 0,
            max_frame_bytes,
        })
    }

    /// The peer's `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `body` at `version` and waits up to `timeout` for its response.
    pub async fn call(
        &mut self,
        body: &RequestBody,
        version: i16,
        timeout: Duration,
    ) -> Result<ResponseBody, PeerError> {
        tokio::time::timeout(timeout, self.exchange(body, version))
            .await
            .map_err(|_| PeerError::Timeout(self.address.clone()))?
    }

    async fn exchange(
        &mut self,
        body: &RequestBody,
        version: i16,
    ) -> Result<ResponseBody, PeerError> {
        let api_key = body.api_key();
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let mut message = Encoder::new();
        RequestHeader {
            request_api_key: api_key,
            request_api_version: version,
            correlation_id,
            client_id: Some(self.client_id.clone()),
        }
        .encode(&mut message, request_header_version(api_key, version));
        body.encode(&mut message, version);
        let size = i32::try_from(message.len()).map_err(|_| PeerError::Malformed {
            address: self.address.clone(),
            detail: "request too large to frame".into(),
        })?;
        let io = |source| PeerError::Io {
            address: self.address.clone(),
            source,
        };
        let stream = self.stream.get_mut();
        stream.write_all(&size.to_be_bytes()).await.map_err(io)?;
        for chunk in message.into_chunks() {
            stream.write_all(&chunk).await.map_err(io)?;
        }
        stream.flush().await.map_err(io)?;

        let mut frame = self.read_frame().await?;
        let malformed = |detail: String| PeerError::Malformed {
            address: self.address.clone(),
            detail,
        };
        let header = ResponseHeader::decode(&mut frame, response_header_version(api_key, version))
            .map_err(|error| malformed(format!("response header: {error}")))?;
        if header.correlation_id != correlation_id {
            return Err(malformed(format!(
                "correlation id {} answers request {correlation_id}",
                header.correlation_id
            )));
        }
        ResponseBody::decode(api_key, version, &mut frame)
            .map_err(|error| malformed(format!("response body: {error}")))
    }

    /// Reads one size-prefixed frame, growing the buffer only as bytes arrive.
    async fn read_frame(&mut self) -> Result<Bytes, PeerError> {
        let io = |source| PeerError::Io {
            address: self.address.clone(),
            source,
        };
        let size = self.stream.read_i32().await.map_err(io)?;
        let Ok(size) = usize::try_from(size) else {
            return Err(PeerError::FrameTooLarge {
                address: self.address.clone(),
                size: i64::from(size),
                max: self.max_frame_bytes,
            });
        };
        if size > self.max_frame_bytes {
            return Err(PeerError::FrameTooLarge {
                address: self.address.clone(),
                size: size as i64,
                max: self.max_frame_bytes,
            });
        }
        let mut frame = BytesMut::with_capacity(size.min(64 * 1024));
        let mut body = (&mut self.stream).take(size as u64);
        while frame.len() < size {
            let read = body.read_buf(&mut frame).await.map_err(io)?;
            if read == 0 {
                return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        Ok(frame.freeze())
    }
}
