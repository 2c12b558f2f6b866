//! Admin requests librdkafka does not offer through the rdkafka crate (ElectLeaders, partition
//! reassignments): one request at a time over a fresh connection to the first bootstrap broker
//! that answers, encoded with the protocol crate's messages at an explicit version. Any broker
//! will do: brokers forward these requests to the active controller.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use strom_protocol::codec::{Decode, Encode, Encoder};
use strom_protocol::messages::request_header::RequestHeader;
use strom_protocol::messages::response_header::ResponseHeader;
use strom_protocol::messages::{request_header_version, response_header_version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client id in request headers.
const CLIENT_ID: &str = "strom-cli";
/// Largest response accepted.
const MAX_RESPONSE_BYTES: usize = 100 * 1024 * 1024;
/// How long connecting to one bootstrap broker may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `request` as API `api_key` at `version` to the first reachable broker of `bootstrap`
/// (`host:port[,host:port...]`) and decodes its answer, all within `timeout`.
pub async fn call<Request: Encode, Response: Decode>(
    bootstrap: &str,
    api_key: i16,
    version: i16,
    request: &Request,
    timeout: Duration,
) -> anyhow::Result<Response> {
    tokio::time::timeout(timeout, exchange(bootstrap, api_key, version, request))
        .await
        .map_err(|_| anyhow!("no answer from {bootstrap} within {timeout:?}"))?
}

async fn connect(bootstrap: &str) -> anyhow::Result<TcpStream> {
    let mut failures = Vec::new();
    for address in bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => failures.push(format!("{address}: {error}")),
            Err(_) => failures.push(format!("{address}: connection timed out")),
        }
    }
    bail!("cannot reach {bootstrap}: {}", failures.join("; "))
}

async fn exchange<Request: Encode, Response: Decode>(
    bootstrap: &str,
    api_key: i16,
    version: i16,
    request: &Request,
) -> anyhow::Result<Response> {
    let mut stream = connect(bootstrap).await?;
    let correlation_id = 1;
    let header = RequestHeader {
        request_api_key: api_key,
        request_api_version: version,
        correlation_id,
        client_id: Some(CLIENT_ID.to_string()),
    };
    let mut out = Encoder::new();
    header.encode(&mut out, request_header_version(api_key, version));
    request.encode(&mut out, version);
    let body = out.into_bytes();
    let size = i32::try_from(body.len()).context("request too large")?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&size.to_be_bytes());
    frame.extend_from_slice(&body);
    stream
        .write_all(&frame)
        .await
        .context("sending the request")?;

    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .await
        .context("reading the answer (the broker closed the connection?)")?;
    let size = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|size| *size <= MAX_RESPONSE_BYTES)
        .ok_or_else(|| anyhow!("answer of invalid size"))?;
    let mut response = vec![0u8; size];
    stream
        .read_exact(&mut response)
        .await
        .context("reading the answer")?;
    let mut response = Bytes::from(response);
    let header = ResponseHeader::decode(&mut response, response_header_version(api_key, version))
        .map_err(|e| anyhow!("undecodable answer header: {e}"))?;
    if header.correlation_id != correlation_id {
        bail!(
            "answer to another request (correlation id {})",
            header.correlation_id
        );
    }
    Response::decode(&mut response, version).map_err(|e| anyhow!("undecodable answer: {e}"))
}
