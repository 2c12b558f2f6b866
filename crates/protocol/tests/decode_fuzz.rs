//! Hostile-input tests of the message decoder: arbitrary bytes and mutated valid messages, decoded as
//! every request and response API at every version (and just outside the supported range), must
//! return an error or a message, never panic or abort; and a valid request frame truncated at every
//! length must be refused cleanly.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{load_schemas, sample_bytes, schema_dir, Sample};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use strom_protocol::codec::{Decode, Encode, Encoder};
use strom_protocol::messages::{
    request_header_version, RequestBody, RequestHeader, ResponseBody, APIS,
};

fn decode_everywhere(data: &Bytes) {
    for api in APIS {
        for version in api.min_version - 1..=api.max_version + 1 {
            let _ = RequestBody::decode(api.key, version, &mut data.clone());
            let _ = ResponseBody::decode(api.key, version, &mut data.clone());
        }
    }
}

/// Full samples of every request at every version, from the schemas (empty without them).
fn request_samples() -> Vec<(i16, i16, Bytes)> {
    let Some(schemas) = load_schemas(&schema_dir()) else {
        eprintln!(
            "Kafka schemas not found at {}: sample-based checks skipped",
            schema_dir().display()
        );
        return Vec::new();
    };
    let mut samples = Vec::new();
    for api in APIS {
        let Some(schema) = schemas.get(&format!("{}Request", api.name)) else {
            continue;
        };
        for version in api.min_version..=api.max_version {
            samples.push((
                api.key,
                version,
                Bytes::from(sample_bytes(schema, version, Sample::Full)),
            ));
        }
    }
    samples
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        decode_everywhere(&Bytes::from(data));
    }

    #[test]
    fn unknown_api_keys_are_refused(api_key in any::<i16>(), version in any::<i16>()) {
        prop_assume!(APIS.iter().all(|api| api.key != api_key));
        prop_assert!(RequestBody::decode(api_key, version, &mut Bytes::from_static(&[0; 64])).is_err());
    }
}

#[test]
fn mutated_valid_requests_never_panic() {
    let samples = request_samples();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for (api_key, version, sample) in &samples {
        let strategy = proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4);
        for _ in 0..8 {
            let flips = strategy.new_tree(&mut runner).unwrap().current();
            let mut mutated = sample.to_vec();
            for (at, byte) in flips {
                if !mutated.is_empty() {
                    let at = at % mutated.len();
                    mutated[at] = byte;
                }
            }
            let mutated = Bytes::from(mutated);
            let _ = RequestBody::decode(*api_key, *version, &mut mutated.clone());
            let _ = ResponseBody::decode(*api_key, *version, &mut mutated.clone());
        }
    }
}

#[test]
fn truncated_request_frames_are_refused_at_every_length() {
    let samples = request_samples();
    for (api_key, version, body) in &samples {
        let header = RequestHeader {
            request_api_key: *api_key,
            request_api_version: *version,
            correlation_id: 7,
            client_id: Some("fuzz".to_string()),
        };
        let header_version = request_header_version(*api_key, *version);
        let mut out = Encoder::new();
        header.encode(&mut out, header_version);
        out.put_slice(body);
        let frame = out.into_bytes();

        let decode = |mut buf: Bytes| -> Result<(RequestHeader, RequestBody, usize), String> {
            let header =
                RequestHeader::decode(&mut buf, header_version).map_err(|e| e.to_string())?;
            let body =
                RequestBody::decode(header.request_api_key, header.request_api_version, &mut buf)
                    .map_err(|e| e.to_string())?;
            Ok((header, body, buf.len()))
        };
        let (decoded_header, _, left) = decode(frame.clone()).unwrap();
        // (Header v0, ControlledShutdown v0 only, has no client id.)
        assert_eq!(
            (
                decoded_header.request_api_key,
                decoded_header.request_api_version,
                decoded_header.correlation_id
            ),
            (*api_key, *version, 7)
        );
        assert_eq!(left, 0, "api {api_key} v{version} left bytes undecoded");
        for len in 0..frame.len() {
            assert!(
                decode(frame.slice(..len)).is_err(),
                "api {api_key} v{version}: a frame cut at {len} of {} bytes decoded",
                frame.len()
            );
        }
    }
}
