//! Round-trip and wire-format tests of the generated message codec: decode(encode(x)) == x across
//! classic and flexible versions, tagged fields written only when they differ from their default,
//! the header quirks (ClientId's classic string, ApiVersions' v0 response header), the dispatch
//! enums, and decoding of truncated input.

use bytes::Bytes;

use super::*;
use crate::codec::{Decode, DecodeError, Encode, Encoder};
use crate::metadata_records::{self, MetadataRecord, PartitionChangeRecord};

fn encode<T: Encode>(message: &T, version: i16) -> Bytes {
    let mut out = Encoder::new();
    message.encode(&mut out, version);
    out.into_bytes()
}

/// Encodes at `version`, decodes back, and checks that the value survived and nothing was left over.
fn assert_round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(message: &T, version: i16) {
    let mut buf = encode(message, version);
    let decoded = T::decode(&mut buf, version).unwrap_or_else(|e| panic!("v{version}: {e}"));
    assert_eq!(&decoded, message, "round trip at version {version}");
    assert!(buf.is_empty(), "v{version}: {} bytes left over", buf.len());
}

/// Every strict prefix of a valid encoding fails to decode, without panicking.
fn assert_truncations_fail<T: Encode + Decode>(message: &T, version: i16) {
    let full = encode(message, version);
    for len in 0..full.len() {
        let mut prefix = full.slice(..len);
        assert!(
            T::decode(&mut prefix, version).is_err(),
            "v{version}: prefix of {len} bytes decoded"
        );
    }
}

fn api_versions_response() -> ApiVersionsResponse {
    ApiVersionsResponse {
        error_code: 0,
        api_keys: vec![
            api_versions_response::ApiVersion {
                api_key: 0,
                min_version: 0,
                max_version: 11,
            },
            api_versions_response::ApiVersion {
                api_key: 18,
                min_version: 0,
                max_version: 4,
            },
        ],
        throttle_time_ms: 7,
        ..Default::default()
    }
}

#[test]
fn api_versions_response_with_default_tags_writes_no_tags() {
    let bytes = encode(&api_versions_response(), 3);
    let expected: &[u8] = &[
        0, 0, // error code
        3, // compact array of 2
        0, 0, 0, 0, 0, 11, 0, // Produce 0-11, no tags
        0, 18, 0, 0, 0, 4, 0, // ApiVersions 0-4, no tags
        0, 0, 0, 7, // throttle time
        0, // no tagged fields
    ];
    assert_eq!(&bytes[..], expected);
}

#[test]
fn api_versions_response_tags_round_trip_when_set() {
    let mut response = api_versions_response();
    response.supported_features = vec![api_versions_response::SupportedFeatureKey {
        name: "metadata.version".into(),
        min_version: 1,
        max_version: 20,
    }];
    response.finalized_features_epoch = 42;
    response.zk_migration_ready = true;
    let plain = encode(&api_versions_response(), 3);
    let tagged = encode(&response, 3);
    assert!(tagged.len() > plain.len());
    // Three tags written (SupportedFeatures, FinalizedFeaturesEpoch, ZkMigrationReady).
    assert_eq!(tagged[plain.len() - 1], 3);
    for version in 0..=4 {
        let mut expected = response.clone();
        if version < 3 {
            expected.supported_features.clear();
            expected.finalized_features_epoch = -1;
            expected.zk_migration_ready = false;
        }
        if version < 1 {
            expected.throttle_time_ms = 0;
        }
        let mut buf = encode(&response, version);
        assert_eq!(
            ApiVersionsResponse::decode(&mut buf, version).unwrap(),
            expected
        );
        assert!(buf.is_empty());
    }
}

#[test]
fn request_header_v2_client_id_is_a_classic_string() {
    let header = RequestHeader {
        request_api_key: 18,
        request_api_version: 3,
        correlation_id: 5,
        client_id: Some("abc".into()),
    };
    let bytes = encode(&header, 2);
    assert_eq!(
        &bytes[..],
        &[0, 18, 0, 3, 0, 0, 0, 5, 0, 3, b'a', b'b', b'c', 0]
    );
    assert_round_trip(&header, 2);
    assert_round_trip(&header, 1);
    let null_client = RequestHeader {
        client_id: None,
        ..header
    };
    assert_eq!(&encode(&null_client, 2)[8..], &[0xff, 0xff, 0]);
    assert_round_trip(&null_client, 2);
}

#[test]
fn response_header_round_trips() {
    let header = ResponseHeader { correlation_id: -3 };
    assert_eq!(&encode(&header, 0)[..], &[0xff, 0xff, 0xff, 0xfd]);
    assert_eq!(&encode(&header, 1)[..], &[0xff, 0xff, 0xff, 0xfd, 0]);
    assert_round_trip(&header, 1);
}

fn produce_request() -> ProduceRequest {
    ProduceRequest {
        transactional_id: Some("txn".into()),
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![produce_request::TopicProduceData {
            name: "events".into(),
            partition_data: vec![produce_request::PartitionProduceData {
                index: 3,
                records: Some(Bytes::from(vec![9u8; 300])),
            }],
        }],
    }
}

#[test]
fn produce_request_round_trips_in_all_versions() {
    let request = produce_request();
    for version in 3..=11 {
        assert_round_trip(&request, version);
    }
    assert_truncations_fail(&request, 9);
    assert_truncations_fail(&request, 3);
}

#[test]
fn produce_request_records_are_shared() {
    let request = produce_request();
    let mut out = Encoder::new();
    request.encode(&mut out, 9);
    let chunks = out.into_chunks();
    let records = request.topic_data[0].partition_data[0]
        .records
        .as_ref()
        .unwrap();
    assert!(chunks
        .iter()
        .any(|chunk| chunk.as_ptr() == records.as_ptr()));
}

#[test]
fn fetch_response_tagged_structs_round_trip() {
    let partition = fetch_response::PartitionData {
        partition_index: 1,
        high_watermark: 100,
        last_stable_offset: 90,
        log_start_offset: 0,
        aborted_transactions: Some(vec![fetch_response::AbortedTransaction {
            producer_id: 12,
            first_offset: 40,
        }]),
        records: Some(Bytes::from_static(b"batch")),
        ..Default::default()
    };
    let response = FetchResponse {
        throttle_time_ms: 0,
        error_code: 0,
        session_id: 77,
        responses: vec![fetch_response::FetchableTopicResponse {
            topic: String::new(),
            topic_id: [7; 16],
            partitions: vec![partition.clone()],
        }],
        node_endpoints: Vec::new(),
    };
    assert_round_trip(&response, 13);
    // Default tagged structs are not written: the partition ends with records then 0 tags.
    let bytes = encode(&response, 13);
    assert_eq!(&bytes[bytes.len() - 3..], &[0, 0, 0]);

    let mut with_tags = response.clone();
    with_tags.responses[0].partitions[0].current_leader = fetch_response::LeaderIdAndEpoch {
        leader_id: 2,
        leader_epoch: 5,
    };
    with_tags.responses[0].partitions[0].diverging_epoch.epoch = 4;
    with_tags.node_endpoints = vec![fetch_response::NodeEndpoint {
        node_id: 2,
        host: "b2".into(),
        port: 9092,
        rack: None,
    }];
    assert_round_trip(&with_tags, 16);
    assert_truncations_fail(&with_tags, 16);
    // NodeEndpoints only exists from v16: at v13 it is neither written nor read.
    let mut buf = encode(&with_tags, 13);
    let decoded = FetchResponse::decode(&mut buf, 13).unwrap();
    assert!(decoded.node_endpoints.is_empty());
    assert_eq!(decoded.responses, with_tags.responses);

    // Classic version: topic names, no topic ids, no tags.
    let mut classic = response;
    classic.responses[0].topic = "events".into();
    classic.responses[0].topic_id = [0; 16];
    assert_round_trip(&classic, 11);
}

#[test]
fn metadata_request_null_topics_only_where_nullable() {
    let all_topics = MetadataRequest {
        topics: None,
        ..Default::default()
    };
    assert_round_trip(&all_topics, 1);
    assert_round_trip(&all_topics, 12);
    // v0 cannot say null: an empty array is written (and read back as an empty list).
    let mut buf = encode(&all_topics, 0);
    assert_eq!(&buf[..], &[0, 0, 0, 0]);
    assert_eq!(
        MetadataRequest::decode(&mut buf, 0).unwrap().topics,
        Some(Vec::new())
    );
    // A null array at v0 is refused.
    let mut null_array = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        MetadataRequest::decode(&mut null_array, 0),
        Err(DecodeError::UnexpectedNull)
    );
}

#[test]
fn nullable_struct_uses_presence_byte() {
    let mut response = ConsumerGroupHeartbeatResponse {
        member_id: Some("m-1".into()),
        member_epoch: 3,
        heartbeat_interval_ms: 5000,
        ..Default::default()
    };
    assert_eq!(response.assignment, None);
    assert_round_trip(&response, 0);
    response.assignment = Some(consumer_group_heartbeat_response::Assignment {
        topic_partitions: vec![consumer_group_heartbeat_response::TopicPartitions {
            topic_id: [1; 16],
            partitions: vec![0, 1, 2],
        }],
    });
    assert_round_trip(&response, 0);
}

#[test]
fn data_schemas_round_trip() {
    let subscription = ConsumerProtocolSubscription {
        topics: vec!["a".into(), "b".into()],
        user_data: Some(Bytes::from_static(b"ud")),
        owned_partitions: vec![consumer_protocol_subscription::TopicPartition {
            topic: "a".into(),
            partitions: vec![1],
        }],
        generation_id: 4,
        rack_id: Some("r1".into()),
    };
    for version in 0..=3 {
        let mut buf = encode(&subscription, version);
        let decoded = ConsumerProtocolSubscription::decode(&mut buf, version).unwrap();
        assert_eq!(decoded.topics, subscription.topics);
        if version == 3 {
            assert_eq!(decoded, subscription);
        }
    }
}

#[test]
fn header_versions_follow_flexibility() {
    assert_eq!(request_header_version(0, 8), 1);
    assert_eq!(request_header_version(0, 9), 2);
    assert_eq!(request_header_version(18, 3), 2);
    assert_eq!(request_header_version(7, 0), 0);
    assert_eq!(request_header_version(7, 1), 1);
    assert_eq!(response_header_version(0, 9), 1);
    assert_eq!(response_header_version(0, 8), 0);
    assert_eq!(response_header_version(18, 3), 0);
}

#[test]
fn api_table_is_sorted_and_excludes_zk_only_apis() {
    assert!(APIS.windows(2).all(|pair| pair[0].key < pair[1].key));
    for zk_only in [4, 5, 6] {
        assert!(api_info(zk_only).is_none());
    }
    let produce = api_info(0).unwrap();
    assert_eq!(
        (produce.name, produce.min_version, produce.flexible_min),
        ("Produce", 0, Some(9))
    );
    assert_eq!(api_info(18).map(|api| api.flexible_min), Some(Some(3)));
    assert_eq!(api_info(47).map(|api| api.flexible_min), Some(None));
}

#[test]
fn body_enums_dispatch_by_key_and_check_versions() {
    let body = RequestBody::Produce(produce_request());
    assert_eq!(body.api_key(), 0);
    let mut out = Encoder::new();
    body.encode(&mut out, 9);
    let mut buf = out.into_bytes();
    assert_eq!(RequestBody::decode(0, 9, &mut buf).unwrap(), body);
    assert_eq!(
        RequestBody::decode(4, 0, &mut Bytes::new()),
        Err(DecodeError::UnknownApiKey(4))
    );
    assert_eq!(
        RequestBody::decode(18, 99, &mut Bytes::new()),
        Err(DecodeError::UnsupportedVersion {
            api_key: 18,
            version: 99
        })
    );
    let response = ResponseBody::ApiVersions(api_versions_response());
    assert_eq!(response.api_key(), 18);
    let mut out = Encoder::new();
    response.encode(&mut out, 3);
    assert_eq!(
        ResponseBody::decode(18, 3, &mut out.into_bytes()).unwrap(),
        response
    );
}

#[test]
fn metadata_records_round_trip_with_tags() {
    let change = PartitionChangeRecord {
        partition_id: 2,
        topic_id: [3; 16],
        leader: 1,
        isr: Some(vec![1, 2]),
        ..Default::default()
    };
    assert_eq!(change.replicas, None);
    assert_eq!(change.leader_recovery_state, -1);
    for version in 0..=2 {
        assert_round_trip(&change, version);
    }
    // Fixed fields (partition id, topic id) then two tags: Isr (0) and Leader (1).
    let bytes = encode(&change, 0);
    assert_eq!(bytes[20], 2);
    let record = MetadataRecord::PartitionChange(change);
    assert_eq!(record.api_key(), 5);
    let mut out = Encoder::new();
    record.encode(&mut out, 2);
    assert_eq!(
        MetadataRecord::decode(5, 2, &mut out.into_bytes()).unwrap(),
        record
    );
    assert_eq!(metadata_records::metadata_record_max_version(5), Some(2));
    assert_eq!(metadata_records::metadata_record_max_version(999), None);
    assert_eq!(
        MetadataRecord::decode(5, 3, &mut Bytes::new()),
        Err(DecodeError::UnsupportedVersion {
            api_key: 5,
            version: 3
        })
    );
}

#[test]
fn unknown_tags_are_skipped() {
    // ResponseHeader v1 with one unknown tag (7) of 2 bytes.
    let mut buf = Bytes::from_static(&[0, 0, 0, 1, 1, 7, 2, 0xaa, 0xbb]);
    assert_eq!(
        ResponseHeader::decode(&mut buf, 1).unwrap(),
        ResponseHeader { correlation_id: 1 }
    );
    assert!(buf.is_empty());
}

#[test]
fn hostile_lengths_fail_cleanly() {
    // Produce v9: null transactional id, acks -1, timeout 0, then a topic array claiming
    // u32::MAX - 1 entries with no bytes behind it.
    let mut buf = Bytes::from_static(&[0, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        ProduceRequest::decode(&mut buf, 9),
        Err(DecodeError::Truncated { .. })
    ));
}

/// A small deterministic pseudo-random generator (xorshift64*), so the fuzz test needs no seed files.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Bytes {
        (0..len)
            .map(|_| self.next() as u8)
            .collect::<Vec<u8>>()
            .into()
    }
}

#[test]
fn random_input_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for api in APIS {
        for version in api.min_version..=api.max_version {
            for round in 0..20 {
                let len = (rng.next() % 64) as usize + round;
                let input = rng.bytes(len);
                let _ = RequestBody::decode(api.key, version, &mut input.clone());
                let _ = ResponseBody::decode(api.key, version, &mut input.clone());
            }
        }
    }
    let mut samples = vec![
        (0, 9, encode(&produce_request(), 9)),
        (18, 3, encode(&api_versions_response(), 3)),
    ];
    samples.push((1, 16, {
        let mut response = FetchResponse::default();
        response
            .responses
            .push(fetch_response::FetchableTopicResponse {
                partitions: vec![fetch_response::PartitionData {
                    aborted_transactions: Some(vec![Default::default()]),
                    current_leader: fetch_response::LeaderIdAndEpoch {
                        leader_id: 1,
                        leader_epoch: 2,
                    },
                    ..Default::default()
                }],
                ..Default::default()
            });
        encode(&response, 16)
    }));
    for (key, version, valid) in samples {
        for _ in 0..500 {
            let mut mutated = valid.to_vec();
            let at = (rng.next() % mutated.len() as u64) as usize;
            mutated[at] = rng.next() as u8;
            let _ = RequestBody::decode(key, version, &mut Bytes::from(mutated.clone()));
            let _ = ResponseBody::decode(key, version, &mut Bytes::from(mutated));
        }
    }
    for key in 0..30 {
        if let Some(max) = metadata_records::metadata_record_max_version(key) {
            for version in 0..=max {
                let input = rng.bytes(48);
                let _ = MetadataRecord::decode(key, version, &mut input.clone());
            }
        }
    }
}
