//! Integration tests of what an append writes: several batches in one append land byte for byte
//! as received, except the fields the broker patches (base offset, partition leader epoch, and
//! under LogAppendTime the attributes, max timestamp and CRC).

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::BatchSpec;
use strom_protocol::records::{validate_batch, BatchBuilder, BatchHeader, Compression};
use strom_storage::{LogConfig, PartitionLog};

const NOW: i64 = 1_700_000_000_000;
const LEADER_EPOCH: i32 = 7;

/// Byte ranges of a v2 batch header.
const BASE_OFFSET: std::ops::Range<usize> = 0..8;
const LEADER_EPOCH_FIELD: std::ops::Range<usize> = 12..16;
const CRC: std::ops::Range<usize> = 17..21;
const ATTRIBUTES: std::ops::Range<usize> = 21..23;
const MAX_TIMESTAMP: std::ops::Range<usize> = 35..43;

/// Five batches of different shapes: plain, idempotent, compressed, one record, a large one.
fn mixed_batches() -> Vec<Bytes> {
    let mut compressed = BatchBuilder::new(0, Compression::Zstd, NOW);
    for i in 0..20 {
        compressed.push(
            NOW + i,
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::from(vec![b'z'; 300])),
            Vec::new(),
        );
    }
    let mut large = BatchSpec::new("large", 50, NOW);
    large.values = (0..50).map(|i| vec![i as u8; 1000]).collect();
    vec![
        common::batch("plain", 3, NOW),
        BatchSpec::new("idem", 4, NOW).idempotent(42, 0, 0).build(),
        compressed.build(),
        common::batch("one", 1, NOW),
        large.build(),
    ]
}

fn concat(batches: &[Bytes]) -> Bytes {
    Bytes::from(batches.concat())
}

/// Reads the whole log back and splits it into batches.
fn stored_batches(log: &PartitionLog, from: i64) -> Vec<Vec<u8>> {
    let data = log.read(from, 1 << 24, i64::MAX, true).unwrap();
    let mut batches = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let header = BatchHeader::parse(&data[at..]).unwrap();
        let batch = data[at..at + header.total_len()].to_vec();
        validate_batch(&batch).unwrap();
        batches.push(batch);
        at += header.total_len();
    }
    assert_eq!(at, data.len());
    batches
}

fn assert_same_except(sent: &[u8], stored: &[u8], patched: &[std::ops::Range<usize>]) {
    assert_eq!(sent.len(), stored.len());
    let mut position = 0;
    let mut ranges = patched.to_vec();
    ranges.sort_by_key(|range| range.start);
    for range in ranges {
        assert_eq!(sent[position..range.start], stored[position..range.start]);
        position = range.end;
    }
    assert_eq!(sent[position..], stored[position..]);
}

#[test]
fn several_batches_in_one_append_are_stored_as_sent_but_for_patched_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    log.append(&common::batch("first", 2, NOW), 3, NOW).unwrap();
    let sent = mixed_batches();
    let records = concat(&sent);
    let outcome = log.append(&records, LEADER_EPOCH, NOW).unwrap();
    assert_eq!(outcome.base_offset, 2);
    assert_eq!(outcome.record_count, 3 + 4 + 20 + 1 + 50);
    // The caller's buffer is untouched.
    assert_eq!(records, concat(&sent));

    let check = |log: &PartitionLog| {
        let stored = stored_batches(log, 2);
        assert_eq!(stored.len(), sent.len());
        let mut expected_base = 2i64;
        for (sent, stored) in sent.iter().zip(&stored) {
            let header = BatchHeader::parse(stored).unwrap();
            assert_eq!(header.base_offset, expected_base);
            assert_eq!(header.partition_leader_epoch, LEADER_EPOCH);
            assert_same_except(sent, stored, &[BASE_OFFSET, LEADER_EPOCH_FIELD]);
            expected_base = header.last_offset() + 1;
        }
        assert_eq!(expected_base, log.log_end_offset());
        // Every batch is found through the indexes built from the patched headers.
        for offset in 0..log.log_end_offset() {
            let data = log.read(offset, 1, i64::MAX, true).unwrap();
            let header = BatchHeader::parse(&data).unwrap();
            assert!(header.base_offset <= offset && offset <= header.last_offset());
        }
    };
    check(&log);
    // After a crash the tail is rescanned and must agree (CRCs still valid).
    drop(log);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    check(&log);
}

#[test]
fn log_append_time_rewrites_only_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type_log_append: true,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    let sent = mixed_batches();
    log.append(&concat(&sent), LEADER_EPOCH, NOW + 5).unwrap();
    let stored = stored_batches(&log, 0);
    assert_eq!(stored.len(), sent.len());
    for (sent, stored) in sent.iter().zip(&stored) {
        let header = BatchHeader::parse(stored).unwrap();
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, NOW + 5);
        assert_eq!(header.partition_leader_epoch, LEADER_EPOCH);
        assert_same_except(
            sent,
            stored,
            &[
                BASE_OFFSET,
                LEADER_EPOCH_FIELD,
                CRC,
                ATTRIBUTES,
                MAX_TIMESTAMP,
            ],
        );
    }
}

#[test]
fn appends_rolling_segments_keep_batches_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    let mut sent = Vec::new();
    for round in 0..30 {
        let batches: Vec<Bytes> = (0..3)
            .map(|i| common::batch(&format!("r{round}b{i}"), 1 + i, NOW))
            .collect();
        log.append(&concat(&batches), round, NOW).unwrap();
        sent.extend(batches.into_iter().map(|batch| (batch, round)));
    }
    assert!(log.segment_count() > 3);
    let mut offset = 0;
    let mut stored = Vec::new();
    while offset < log.log_end_offset() {
        let batches = stored_batches(&log, offset);
        offset = BatchHeader::parse(batches.last().unwrap())
            .unwrap()
            .last_offset()
            + 1;
        stored.extend(batches);
    }
    assert_eq!(stored.len(), sent.len());
    for ((sent, epoch), stored) in sent.iter().zip(&stored) {
        assert_eq!(
            BatchHeader::parse(stored).unwrap().partition_leader_epoch,
            *epoch
        );
        assert_same_except(sent, stored, &[BASE_OFFSET, LEADER_EPOCH_FIELD]);
    }
}
