//! Fuzz target: `[api_key i16][version i16][body...]` decoded as a request body (and as a response
//! body) with that key and version. Any input must yield a message or an error, never a panic, an
//! abort or an allocation beyond the input's size.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strom_protocol::messages::{RequestBody, ResponseBody};

fuzz_target!(|data: &[u8]| {
    let Some((key_and_version, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let api_key = i16::from_be_bytes([key_and_version[0], key_and_version[1]]);
    let version = i16::from_be_bytes([key_and_version[2], key_and_version[3]]);
    let body = Bytes::copy_from_slice(body);
    let _ = RequestBody::decode(api_key, version, &mut body.clone());
    let _ = ResponseBody::decode(api_key, version, &mut body.clone());
});
