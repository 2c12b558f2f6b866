//! A small Kafka protocol client on one connection, with Strom's generated message types: for
//! what librdkafka does not send (DescribeQuorum, DescribeCluster with Strom's tagged fields) and
//! for measurements that must see every request and answer (`strom bench failover`). It asks
//! ApiVersions first and sends each request at the newest version both sides know.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, Bytes};
use strom_protocol::codec::{Decode, Encode, Encoder};
use strom_protocol::messages::api_versions_request::ApiVersionsRequest;
use strom_protocol::messages::api_versions_response::ApiVersionsResponse;
use strom_protocol::messages::request_header::RequestHeader;
use strom_protocol::messages::response_header::ResponseHeader;
use strom_protocol::messages::{request_header_version, response_header_version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// ApiVersions' key, and the version asked with (its answer is read at v0 header rules).
const API_VERSIONS: (i16, i16) = (18, 3);
/// The largest answer read (a full Metadata of a big cluster fits).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// One connection to a broker.
#[derive(Debug)]
pub struct WireClient {
    stream: TcpStream,
    address: String,
    client_id: String,
    correlation_id: i32,
    timeout: Duration,
    /// API key → (min, max) version the broker serves.
    versions: HashMap<i16, (i16, i16)>,
}

impl WireClient {
    /// Connects to the first of `bootstrap` (`host:port[,host:port...]`) that answers within
    /// `timeout`, and asks it which versions it serves.
    pub async fn connect(bootstrap: &str, timeout: Duration) -> anyhow::Result<WireClient> {
        let mut last_error = None;
        for address in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match WireClient::connect_to(address, timeout).await {
                Ok(client) => return Ok(client),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no bootstrap server given")))
    }

    /// Connects to `address` (`host:port`).
    pub async fn connect_to(address: &str, timeout: Duration) -> anyhow::Result<WireClient> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| anyhow!("cannot reach {address}: no connection within {timeout:?}"))?
            .with_context(|| format!("cannot reach {address}"))?;
        stream.set_nodelay(true).ok();
        let mut client = WireClient {
            stream,
            address: address.to_string(),
            client_id: "strom-cli".to_string(),
            correlation_id: 0,
            timeout,
            versions: HashMap::new(),
        };
        let request = ApiVersionsRequest {
            client_software_name: "strom".to_string(),
            client_software_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let answer: ApiVersionsResponse = client
            .call_at(API_VERSIONS.0, API_VERSIONS.1, &request)
            .await?;
        if answer.error_code != 0 {
            bail!(
                "{address} refused ApiVersions (error {})",
                answer.error_code
            );
        }
        client.versions = answer
            .api_keys
            .iter()
            .map(|api| (api.api_key, (api.min_version, api.max_version)))
            .collect();
        Ok(client)
    }

    /// The address this client is connected to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The newest version of `api_key` at most `newest` that the broker serves, if any.
    pub fn version(&self, api_key: i16, newest: i16) -> Option<i16> {
        let (min, max) = *self.versions.get(&api_key)?;
        let version = max.min(newest);
        (version >= min).then_some(version)
    }

    /// Sends `request` at the newest version up to `newest` the broker serves, and reads the
    /// answer; returns it with the version used.
    pub async fn call<Response: Decode>(
        &mut self,
        api_key: i16,
        newest: i16,
        request: &impl Encode,
    ) -> anyhow::Result<(Response, i16)> {
        let version = self
            .version(api_key, newest)
            .ok_or_else(|| anyhow!("{} does not serve API key {api_key}", self.address))?;
        Ok((self.call_at(api_key, version, request).await?, version))
    }

    /// Sends `request` at `version` and reads the answer.
    pub async fn call_at<Response: Decode>(
        &mut self,
        api_key: i16,
        version: i16,
        request: &impl Encode,
    ) -> anyhow::Result<Response> {
        let timeout = self.timeout;
        let address = self.address.clone();
        tokio::time::timeout(timeout, self.exchange(api_key, version, request))
            .await
            .map_err(|_| anyhow!("{address} did not answer API key {api_key} within {timeout:?}"))?
            .with_context(|| format!("API key {api_key} v{version} to {address}"))
    }

    async fn exchange<Response: Decode>(
        &mut self,
        api_key: i16,
        version: i16,
        request: &impl Encode,
    ) -> anyhow::Result<Response> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader {
            request_api_key: api_key,
            request_api_version: version,
            correlation_id: self.correlation_id,
            client_id: Some(self.client_id.clone()),
        };
        let mut out = Encoder::new();
        header.encode(&mut out, request_header_version(api_key, version));
        request.encode(&mut out, version);
        let body = out.into_bytes();
        let size = i32::try_from(body.len()).context("request too large")?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await?;

        let size = usize::try_from(self.stream.read_i32().await?)
            .ok()
            .filter(|size| *size <= MAX_RESPONSE_BYTES)
            .context("answer size out of range")?;
        let mut answer = vec![0u8; size];
        self.stream.read_exact(&mut answer).await?;
        let mut answer = Bytes::from(answer);
        let header = ResponseHeader::decode(&mut answer, response_header_version(api_key, version))
            .map_err(|e| anyhow!("undecodable answer header: {e:?}"))?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "answer to request {} arrived for request {}",
                header.correlation_id,
                self.correlation_id
            );
        }
        let response = Response::decode(&mut answer, version)
            .map_err(|e| anyhow!("undecodable answer: {e:?}"))?;
        if answer.has_remaining() {
            bail!("{} bytes left after the answer", answer.remaining());
        }
        Ok(response)
    }
}
