//! Record-level tests: batches built by [`BatchBuilder`] validate and decode back to the same records
//! with every codec, agree byte for byte with the `kafka-protocol` crate's encoder, and hostile
//! batches (random bytes, truncations, corrupted fields behind a valid CRC) are refused without
//! panicking.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records as oracle;
use proptest::prelude::*;
use strom_protocol::records::{
    control_record_type, decode_records, end_transaction_marker,
    first_offset_at_or_after_timestamp, validate_batch, BatchBuilder, Compression,
    ControlRecordType, Record, RecordHeader,
};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];
const LIMIT: usize = 16 << 20;
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

fn sample_records(count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            offset_delta: i as i32,
            timestamp_delta: (i as i64 * 37) % 101,
            key: (i % 3 != 0).then(|| Bytes::from(format!("key-{i}"))),
            value: (i % 5 != 4).then(|| Bytes::from(vec![(i % 256) as u8; i * 13 % 700])),
            headers: (0..i % 3)
                .map(|h| RecordHeader {
                    key: format!("h{h}"),
                    value: (h != 1).then(|| Bytes::from(format!("v{i}-{h}"))),
                })
                .collect(),
        })
        .collect()
}

fn build(codec: Compression, records: &[Record]) -> Bytes {
    let mut builder = BatchBuilder::new(1000, codec, BASE_TIMESTAMP)
        .producer(77, 3, 40)
        .partition_leader_epoch(5)
        .transactional(true);
    for record in records {
        builder.push_record(record.clone());
    }
    builder.build()
}

#[test]
fn builder_output_validates_and_decodes_to_the_same_records() {
    for codec in CODECS {
        for count in [0, 1, 2, 50, 500] {
            let records = sample_records(count);
            let batch = build(codec, &records);
            let header = validate_batch(&batch).unwrap();
            assert_eq!(header.compression().unwrap(), codec);
            assert_eq!(header.base_offset, 1000);
            assert_eq!(header.partition_leader_epoch, 5);
            assert_eq!(header.record_count, count as i32);
            assert_eq!(header.last_offset_delta, count.saturating_sub(1) as i32);
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence
                ),
                (77, 3, 40)
            );
            assert!(header.is_transactional() && !header.is_control());
            let expected_max = records
                .iter()
                .map(|r| BASE_TIMESTAMP + r.timestamp_delta)
                .max();
            assert_eq!(header.max_timestamp, expected_max.unwrap_or(-1));
            assert_eq!(
                decode_records(&batch, LIMIT).unwrap(),
                records,
                "{codec:?} x{count}"
            );
        }
    }
}

#[test]
fn push_assigns_consecutive_offsets_and_relative_timestamps() {
    let mut builder = BatchBuilder::new(0, Compression::None, BASE_TIMESTAMP);
    builder
        .push(
            BASE_TIMESTAMP + 5,
            None,
            Some(Bytes::from_static(b"a")),
            Vec::new(),
        )
        .push(
            BASE_TIMESTAMP - 2,
            Some(Bytes::from_static(b"k")),
            None,
            Vec::new(),
        );
    assert_eq!(builder.len(), 2);
    let records = decode_records(&builder.build(), LIMIT).unwrap();
    assert_eq!(
        records
            .iter()
            .map(|r| (r.offset_delta, r.timestamp_delta))
            .collect::<Vec<_>>(),
        vec![(0, 5), (1, -2)]
    );
}

#[test]
fn decompression_bound_applies() {
    let records = vec![Record {
        value: Some(Bytes::from(vec![0u8; 100_000])),
        ..Record::default()
    }];
    for codec in CODECS[1..].iter().copied() {
        let batch = build(codec, &records);
        assert!(decode_records(&batch, 50_000).is_err(), "{codec:?}");
        assert!(decode_records(&batch, 200_000).is_ok(), "{codec:?}");
    }
}

#[test]
fn timestamp_lookup_finds_the_first_record_at_or_after() {
    let mut builder = BatchBuilder::new(500, Compression::Lz4, BASE_TIMESTAMP);
    for ts in [10, 30, 20, 40] {
        builder.push(BASE_TIMESTAMP + ts, None, None, Vec::new());
    }
    let batch = builder.build();
    let at = |ts: i64| first_offset_at_or_after_timestamp(&batch, BASE_TIMESTAMP + ts).unwrap();
    assert_eq!(at(0), Some((500, BASE_TIMESTAMP + 10)));
    assert_eq!(at(15), Some((501, BASE_TIMESTAMP + 30)));
    assert_eq!(at(30), Some((501, BASE_TIMESTAMP + 30)));
    assert_eq!(at(35), Some((503, BASE_TIMESTAMP + 40)));
    assert_eq!(at(41), None);
}

#[test]
fn timestamp_lookup_uses_max_timestamp_under_log_append_time() {
    let mut builder = BatchBuilder::new(0, Compression::None, BASE_TIMESTAMP);
    builder.push(BASE_TIMESTAMP, None, None, Vec::new());
    builder.push(BASE_TIMESTAMP + 1, None, None, Vec::new());
    let mut batch = BytesMut::from(&builder.build()[..]);
    strom_protocol::records::set_log_append_time(&mut batch, BASE_TIMESTAMP + 1000);
    let batch = batch.freeze();
    assert_eq!(
        first_offset_at_or_after_timestamp(&batch, BASE_TIMESTAMP + 500).unwrap(),
        Some((0, BASE_TIMESTAMP + 1000))
    );
}

#[test]
fn end_transaction_markers_are_control_batches() {
    for (commit, expected) in [
        (true, ControlRecordType::Commit),
        (false, ControlRecordType::Abort),
    ] {
        let batch = end_transaction_marker(42, BASE_TIMESTAMP, 9, 2, commit, 7);
        let header = validate_batch(&batch).unwrap();
        assert!(header.is_control() && header.is_transactional());
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (9, 2, -1)
        );
        let records = decode_records(&batch, LIMIT).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(control_record_type(&records[0]).unwrap(), expected);
        assert_eq!(records[0].value.as_deref(), Some(&[0, 0, 0, 0, 0, 7][..]));
        // The oracle sees the same thing.
        let decoded = oracle::RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
        assert!(decoded.records[0].control);
    }
}

fn to_oracle(records: &[Record]) -> Vec<oracle::Record> {
    records
        .iter()
        .map(|r| oracle::Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 5,
            producer_id: 77,
            producer_epoch: 3,
            timestamp_type: oracle::TimestampType::Creation,
            offset: 1000 + i64::from(r.offset_delta),
            sequence: 40 + r.offset_delta,
            timestamp: BASE_TIMESTAMP + r.timestamp_delta,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|h| (StrBytes::from_string(h.key.clone()), h.value.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect()
}

fn oracle_codec(codec: Compression) -> oracle::Compression {
    match codec {
        Compression::None => oracle::Compression::None,
        Compression::Gzip => oracle::Compression::Gzip,
        Compression::Snappy => oracle::Compression::Snappy,
        Compression::Lz4 => oracle::Compression::Lz4,
        Compression::Zstd => oracle::Compression::Zstd,
    }
}

/// Records whose smallest timestamp is the first one, so that the oracle (which takes the minimum as
/// base timestamp) and we use the same base.
fn oracle_compatible_records(count: usize) -> Vec<Record> {
    let mut records = sample_records(count);
    for record in &mut records {
        // Distinct header keys per record already; keep timestamps >= the first one's (0).
        record.timestamp_delta = record.timestamp_delta.abs();
    }
    records
}

#[test]
fn uncompressed_batches_match_the_oracle_byte_for_byte() {
    for count in [1, 2, 50] {
        let records = oracle_compatible_records(count);
        let ours = build(Compression::None, &records);
        let mut theirs = BytesMut::new();
        let options = oracle::RecordEncodeOptions {
            version: 2,
            compression: oracle::Compression::None,
        };
        oracle::RecordBatchEncoder::encode(&mut theirs, &to_oracle(&records), &options).unwrap();
        assert_eq!(ours, theirs.freeze(), "x{count}");
    }
}

#[test]
fn every_codec_interoperates_with_the_oracle() {
    for codec in CODECS {
        let records = oracle_compatible_records(40);
        // Theirs -> ours.
        let mut theirs = BytesMut::new();
        let options = oracle::RecordEncodeOptions {
            version: 2,
            compression: oracle_codec(codec),
        };
        oracle::RecordBatchEncoder::encode(&mut theirs, &to_oracle(&records), &options).unwrap();
        let theirs = theirs.freeze();
        validate_batch(&theirs).unwrap();
        assert_eq!(
            decode_records(&theirs, LIMIT).unwrap(),
            records,
            "theirs -> ours, {codec:?}"
        );
        // Ours -> theirs.
        let ours = build(codec, &records);
        let decoded = oracle::RecordBatchDecoder::decode(&mut ours.clone()).unwrap();
        assert_eq!(decoded.compression, oracle_codec(codec));
        assert_eq!(
            decoded.records,
            to_oracle(&records),
            "ours -> theirs, {codec:?}"
        );
    }
}

/// Rewrites the batch length and CRC of a mutated batch so the mutation reaches record parsing.
fn reseal(mut batch: Vec<u8>) -> Bytes {
    if batch.len() >= 61 {
        let length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    Bytes::from(batch)
}

#[test]
fn truncated_batches_are_refused_at_every_length() {
    for codec in CODECS {
        let records = sample_records(20);
        let batch = build(codec, &records);
        for len in 0..batch.len() {
            assert!(decode_records(&batch.slice(..len), LIMIT).is_err());
            match decode_records(&reseal(batch[..len].to_vec()), LIMIT) {
                Err(_) => {}
                // lz4_flex, unlike Java, accepts a frame cut exactly before its end mark: nothing is lost.
                Ok(decoded) => assert!(
                    codec == Compression::Lz4 && decoded == records,
                    "{codec:?} {len}"
                ),
            }
        }
    }
}

#[test]
fn huge_varint_lengths_are_refused() {
    // One record whose key length claims i32::MAX bytes.
    let mut batch = build(Compression::None, &[Record::default()]).to_vec();
    batch.truncate(61);
    // length, attributes, timestamp delta, offset delta, key length = varint(i32::MAX)
    batch.extend_from_slice(&[
        0x10, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    assert!(decode_records(&reseal(batch.clone()), LIMIT).is_err());
    // A header count of i32::MAX.
    let mut batch = batch[..61].to_vec();
    batch.extend_from_slice(&[0x0e, 0, 0, 0, 1, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 0]);
    assert!(decode_records(&reseal(batch), LIMIT).is_err());
    // A record count of i32::MAX with one record present.
    let mut batch = build(Compression::None, &[Record::default()]).to_vec();
    batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(decode_records(&reseal(batch), LIMIT).is_err());
}

#[test]
fn trailing_bytes_after_the_last_record_are_refused() {
    let mut batch = build(Compression::None, &sample_records(3)).to_vec();
    batch.push(0);
    assert!(decode_records(&reseal(batch), LIMIT).is_err());
}

proptest! {
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_records(&Bytes::from(data.clone()), LIMIT);
        let _ = decode_records(&reseal(data.clone()), LIMIT);
        let _ = first_offset_at_or_after_timestamp(&reseal(data), 0);
    }

    #[test]
    fn corrupted_sealed_batches_never_panic(
        codec_index in 0usize..5,
        count in 0usize..8,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let codec = CODECS[codec_index];
        let mut batch = build(codec, &sample_records(count)).to_vec();
        for (at, byte) in flips {
            let at = 21 + at % (batch.len() - 21);
            batch[at] = byte;
        }
        let _ = decode_records(&reseal(batch.clone()), 1 << 20);
        let _ = first_offset_at_or_after_timestamp(&reseal(batch), 0);
    }

    #[test]
    fn arbitrary_records_round_trip(
        codec_index in 0usize..5,
        raw in proptest::collection::vec(
            (
                any::<i64>(),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                proptest::collection::vec(("[a-z]{0,6}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8))), 0..3),
            ),
            0..20,
        ),
    ) {
        let codec = CODECS[codec_index];
        let records: Vec<Record> = raw
            .into_iter()
            .enumerate()
            .map(|(i, (timestamp_delta, key, value, headers))| Record {
                offset_delta: i as i32 * 2,
                timestamp_delta,
                key: key.map(Bytes::from),
                value: value.map(Bytes::from),
                headers: headers
                    .into_iter()
                    .map(|(key, value)| RecordHeader { key, value: value.map(Bytes::from) })
                    .collect(),
            })
            .collect();
        let batch = build(codec, &records);
        prop_assert!(validate_batch(&batch).is_ok());
        prop_assert_eq!(decode_records(&batch, LIMIT).unwrap(), records);
    }
}
