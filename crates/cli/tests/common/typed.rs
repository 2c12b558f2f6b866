//! A typed protocol client: requests and responses are the protocol crate's generated messages,
//! sent over a plain TcpStream at an explicit API version. For what no client library will send
//! (stale generations, a member that vanishes, flags librdkafka never sets) while still reading
//! the answers field by field.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use strom_protocol::codec::{Decode, Encode, Encoder};
use strom_protocol::messages::request_header::RequestHeader;
use strom_protocol::messages::response_header::ResponseHeader;
use strom_protocol::messages::{request_header_version, response_header_version};

use super::{StromProcess, WAIT_DEADLINE};

/// One connection to the broker. Requests are answered in order, so a request whose answer is
/// parked by the broker (a JoinGroup waiting for the rest of its group) can be sent now and
/// received later, while other connections go on.
pub struct TypedClient {
    stream: TcpStream,
    client_id: String,
    correlation_id: i32,
    /// (correlation id, api key, version) of requests sent and not yet received, oldest first.
    in_flight: VecDeque<(i32, i16, i16)>,
}

impl TypedClient {
    /// Connects with `client_id` in every request header; reads give up after [`WAIT_DEADLINE`].
    pub fn connect(broker: &StromProcess, client_id: &str) -> TypedClient {
        TypedClient::connect_to(broker.addr(), client_id)
    }

    /// Like [`TypedClient::connect`], to any address (another listener of a broker).
    pub fn connect_to(address: SocketAddr, client_id: &str) -> TypedClient {
        let stream = TcpStream::connect(address).expect("connect to broker");
        stream
            .set_read_timeout(Some(WAIT_DEADLINE))
            .expect("set read timeout");
        stream.set_nodelay(true).expect("nodelay");
        TypedClient {
            stream,
            client_id: client_id.to_string(),
            correlation_id: 0,
            in_flight: VecDeque::new(),
        }
    }

    /// Sends a request without waiting for its answer.
    pub fn send(&mut self, api_key: i16, version: i16, request: &impl Encode) {
        self.correlation_id += 1;
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
        let size = i32::try_from(body.len()).expect("request fits i32");
        self.stream
            .write_all(&size.to_be_bytes())
            .expect("send size");
        self.stream.write_all(&body).expect("send request");
        self.in_flight
            .push_back((self.correlation_id, api_key, version));
    }

    /// Reads the answer to the oldest request sent and not yet received.
    pub fn receive<Response: Decode>(&mut self) -> Response {
        let (correlation_id, api_key, version) = self
            .in_flight
            .pop_front()
            .expect("a request is waiting for its answer");
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .expect("read response size");
        let size = usize::try_from(i32::from_be_bytes(size)).expect("positive size");
        let mut response = vec![0u8; size];
        self.stream
            .read_exact(&mut response)
            .expect("read response");
        let mut response = bytes::Bytes::from(response);
        let header =
            ResponseHeader::decode(&mut response, response_header_version(api_key, version))
                .expect("decode response header");
        assert_eq!(
            header.correlation_id, correlation_id,
            "answers come in order"
        );
        Response::decode(&mut response, version).expect("decode response")
    }

    /// Sends a request and waits for its answer.
    pub fn call<Response: Decode>(
        &mut self,
        api_key: i16,
        version: i16,
        request: &impl Encode,
    ) -> Response {
        self.send(api_key, version, request);
        self.receive()
    }
}
