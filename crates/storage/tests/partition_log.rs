//! Integration tests of `PartitionLog`: append/read, rolls, retention, DeleteRecords, recovery,
//! idempotent producers, timestamps.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::{self, OpenOptions};
use std::path::Path;

use bytes::Bytes;
use common::{batch, decode_records, BatchSpec, CommittedAppend};
use strom_protocol::ErrorCode;
use strom_storage::{LogConfig, PartitionLog, StorageError};

const NOW: i64 = 1_700_000_000_000;

fn small_segments(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

fn read_all(log: &PartitionLog, from: i64) -> Vec<common::Record> {
    let mut records = Vec::new();
    let mut offset = from;
    while offset < log.log_end_offset() {
        let data = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
        assert!(!data.is_empty(), "empty read at {offset}");
        let decoded = decode_records(&data);
        offset = decoded.last().unwrap().0 + 1;
        records.extend(decoded.into_iter().filter(|record| record.0 >= from));
    }
    records
}

fn log_files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

#[test]
fn append_and_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let first = log.append(&batch("a", 3, NOW), 5, NOW).unwrap();
    assert_eq!(
        (first.base_offset, first.last_offset, first.record_count),
        (0, 2, 3)
    );
    assert_eq!(first.log_append_time, -1);
    assert!(!first.duplicate);
    let second = log.append(&batch("b", 2, NOW + 10), 5, NOW).unwrap();
    assert_eq!((second.base_offset, second.last_offset), (3, 4));
    assert_eq!(log.log_end_offset(), 5);

    let data = log.read(0, 1 << 20, i64::MAX, true).unwrap();
    let records = decode_records(&data);
    assert_eq!(records.len(), 5);
    assert_eq!(records[3], (3, NOW + 10, b"b-0".to_vec()));
    // The stored leader epoch was patched.
    assert_eq!(i32::from_be_bytes(data[12..16].try_into().unwrap()), 5);
    assert_eq!(
        log_files(dir.path(), ".log"),
        vec!["00000000000000000000.log".to_string()]
    );
}

#[test]
fn read_from_the_middle_of_a_batch_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    let first = batch("a", 4, NOW);
    log.append(&first, 0, NOW).unwrap();
    log.append(&batch("b", 4, NOW), 0, NOW).unwrap();

    // Starts with the batch containing offset 2.
    let records = decode_records(&log.read(2, 1 << 20, i64::MAX, true).unwrap());
    assert_eq!(records.first().unwrap().0, 0);
    assert_eq!(records.len(), 8);
    let records = decode_records(&log.read(5, 1 << 20, i64::MAX, true).unwrap());
    assert_eq!(records.first().unwrap().0, 4);

    // max_bytes smaller than one batch: one whole batch only with min_one_message.
    let one = log.read(0, 10, i64::MAX, true).unwrap();
    assert_eq!(one.len(), first.len());
    assert!(log.read(0, 10, i64::MAX, false).unwrap().is_empty());
    // Exactly one batch fits.
    assert_eq!(
        log.read(0, first.len() + 5, i64::MAX, false).unwrap().len(),
        first.len()
    );
    // High watermark bound: nothing at or beyond it.
    assert_eq!(
        decode_records(&log.read(0, 1 << 20, 4, true).unwrap()).len(),
        4
    );
    assert!(log.read(4, 1 << 20, 4, true).unwrap().is_empty());
    // Log end is empty, beyond is out of range.
    assert!(log.read(8, 1 << 20, i64::MAX, true).unwrap().is_empty());
    let error = log.read(9, 1 << 20, i64::MAX, true).unwrap_err();
    assert!(matches!(
        error,
        StorageError::OffsetOutOfRange {
            offset: 9,
            start: 0,
            end: 8
        }
    ));
    assert_eq!(error.error_code(), ErrorCode::OffsetOutOfRange);
}

#[test]
fn rolls_by_size_and_reads_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch("x", 5, NOW);
    let mut log = PartitionLog::open(dir.path(), small_segments(one.len() as u64 * 3)).unwrap();
    for _ in 0..10 {
        log.append(&batch("x", 5, NOW), 0, NOW).unwrap();
    }
    assert_eq!(log.log_end_offset(), 50);
    assert_eq!(log.segment_count(), 4);
    assert_eq!(
        log_files(dir.path(), ".log"),
        vec![
            "00000000000000000000.log",
            "00000000000000000015.log",
            "00000000000000000030.log",
            "00000000000000000045.log"
        ]
    );
    let records = read_all(&log, 0);
    assert_eq!(records.len(), 50);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, record)| record.0 == i as i64));
    let records = read_all(&log, 17);
    assert_eq!(records.first().unwrap().0, 17);
    // Producer snapshots are written on roll.
    assert!(!log_files(dir.path(), ".snapshot").is_empty());
}

#[test]
fn rolls_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    log.append(&batch("a", 1, NOW), 0, NOW).unwrap();
    log.append(&batch("b", 1, NOW + 500), 0, NOW).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&batch("c", 1, NOW + 1500), 0, NOW).unwrap();
    assert_eq!(log.segment_count(), 2);
    // Periodic roll by wall clock since creation.
    log.maybe_roll_and_flush(i64::MAX / 2).unwrap();
    assert_eq!(log.segment_count(), 3);
    assert_eq!(read_all(&log, 0).len(), 3);
}

#[test]
fn retention_by_size_deletes_oldest_segments() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch("x", 2, NOW);
    let mut config = small_segments(one.len() as u64 * 2);
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for _ in 0..10 {
        log.append_committed(&batch("x", 2, NOW), 0, NOW).unwrap();
    }
    assert_eq!(log.segment_count(), 5);
    assert_eq!(log.apply_retention(NOW).unwrap(), 0);
    config.retention_bytes = one.len() as i64 * 5;
    log.set_config(config);
    let deleted = log.apply_retention(NOW).unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(log.log_start_offset(), 8);
    assert_eq!(log.size_bytes(), one.len() as u64 * 6);
    assert!(matches!(
        log.read(0, 1000, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log, 8).len(), 12);
    assert_eq!(log_files(dir.path(), ".log").len(), 3);
    assert_eq!(log_files(dir.path(), ".index").len(), 3);
}

#[test]
fn retention_by_time_deletes_expired_segments_including_active() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch("x", 2, NOW);
    let config = LogConfig {
        retention_ms: 1000,
        ..small_segments(one.len() as u64 * 2)
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    for i in 0..4 {
        log.append_committed(&batch("o", 2, NOW + i), 0, NOW)
            .unwrap();
    }
    for i in 0..3 {
        log.append_committed(&batch("n", 2, NOW + 5000 + i), 0, NOW)
            .unwrap();
    }
    assert_eq!(log.segment_count(), 4);
    assert_eq!(log.apply_retention(NOW + 5500).unwrap(), 2);
    assert_eq!(log.log_start_offset(), 8);
    assert_eq!(read_all(&log, 8).len(), 6);
    // Everything expired: the active segment is rolled and removed too.
    assert_eq!(log.apply_retention(NOW + 100_000).unwrap(), 2);
    assert_eq!(log.log_start_offset(), 14);
    assert_eq!(log.log_end_offset(), 14);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(
        log.append_committed(&batch("again", 1, NOW), 0, NOW)
            .unwrap()
            .base_offset,
        14
    );
    // Infinite retention deletes nothing.
    let mut config = log.config().clone();
    config.retention_ms = -1;
    log.set_config(config);
    assert_eq!(log.apply_retention(i64::MAX / 2).unwrap(), 0);
}

#[test]
fn delete_records_before_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch("x", 2, NOW);
    let config = small_segments(one.len() as u64 * 2);
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for _ in 0..5 {
        log.append_committed(&batch("x", 2, NOW), 0, NOW).unwrap();
    }
    assert!(matches!(
        log.delete_records_before(11),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.delete_records_before(5).unwrap(), 5);
    assert_eq!(log.log_start_offset(), 5);
    // The segment [0, 4) is wholly below the start and gone.
    assert_eq!(log_files(dir.path(), ".log").len(), 2);
    assert_eq!(log.delete_records_before(3).unwrap(), 5);
    // Reading offset 5 returns the batch holding it (4..5).
    assert_eq!(
        decode_records(&log.read(5, 1 << 20, i64::MAX, true).unwrap())[0].0,
        4
    );
    assert!(log.read(3, 1 << 20, i64::MAX, true).is_err());
    log.close().unwrap();

    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.log_start_offset(), 5);
    assert_eq!(log.log_end_offset(), 10);
    drop(log);
    // Even without a clean close.
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.delete_records_before(10).unwrap(), 10);
    drop(log);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 10));
    assert!(log.read(10, 100, i64::MAX, true).unwrap().is_empty());
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(600);
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for i in 0..30 {
        log.append(&batch(&format!("r{i}"), 3, NOW + i), 0, NOW)
            .unwrap();
    }
    let before = read_all(&log, 0);
    let segments = log.segment_count();
    let max = log.max_timestamp();
    log.close().unwrap();

    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.log_end_offset(), 90);
    assert_eq!(log.segment_count(), segments);
    assert_eq!(read_all(&log, 0), before);
    assert_eq!(log.max_timestamp(), max);
    assert_eq!(
        log.append(&batch("next", 1, NOW), 0, NOW)
            .unwrap()
            .base_offset,
        90
    );
    drop(log);

    // Lost index files are rebuilt.
    for name in log_files(dir.path(), ".index") {
        fs::remove_file(dir.path().join(name)).unwrap();
    }
    for name in log_files(dir.path(), ".timeindex") {
        fs::write(dir.path().join(name), b"garbage").unwrap();
    }
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), 91);
    assert_eq!(read_all(&log, 0).len(), 91);
    assert_eq!(read_all(&log, 45)[0].0, 45);
    assert_eq!(log.max_timestamp(), max);
}

fn last_log_file(dir: &Path) -> std::path::PathBuf {
    dir.join(log_files(dir, ".log").pop().unwrap())
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(1 << 20);
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for _ in 0..4 {
        log.append(&batch("x", 3, NOW), 0, NOW).unwrap();
    }
    let whole_size = log.size_bytes();
    let batch_len = batch("x", 3, NOW).len() as u64;
    drop(log);

    // Cut the file in the middle of the last batch.
    let file = OpenOptions::new()
        .write(true)
        .open(last_log_file(dir.path()))
        .unwrap();
    file.set_len(whole_size - 7).unwrap();
    drop(file);
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(log.size_bytes(), whole_size - batch_len);
    assert_eq!(
        log.append(&batch("y", 2, NOW), 0, NOW).unwrap().base_offset,
        9
    );
    assert_eq!(read_all(&log, 0).len(), 11);
    drop(log);

    // Flip a byte inside the last batch: the CRC catches it.
    let path = last_log_file(dir.path());
    let mut data = fs::read(&path).unwrap();
    let at = data.len() - 3;
    data[at] ^= 0xff;
    fs::write(&path, &data).unwrap();
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(
        log.append(&batch("z", 1, NOW), 0, NOW).unwrap().base_offset,
        9
    );
    let records = read_all(&log, 0);
    assert_eq!(records.len(), 10);
    assert_eq!(records[9].2, b"z-0".to_vec());
    drop(log);

    // Garbage shorter than a header at the end.
    let mut data = fs::read(&path).unwrap();
    data.extend_from_slice(&[1, 2, 3]);
    fs::write(&path, &data).unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), 10);
}

#[test]
fn idempotent_producer_rules() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(1 << 20);
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let first = BatchSpec::new("p", 3, NOW).idempotent(42, 0, 0).build();
    assert_eq!(log.append(&first, 0, NOW).unwrap().base_offset, 0);
    log.append(&batch("other", 2, NOW), 0, NOW).unwrap();
    let second = BatchSpec::new("p", 2, NOW).idempotent(42, 0, 3).build();
    assert_eq!(log.append(&second, 0, NOW).unwrap().base_offset, 5);

    // A retry of the first batch answers with its original offsets and writes nothing.
    let retry = log.append(&first, 0, NOW).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (0, 2));
    assert_eq!(log.log_end_offset(), 7);

    // A gap.
    let gap = BatchSpec::new("p", 1, NOW).idempotent(42, 0, 9).build();
    let error = log.append(&gap, 0, NOW).unwrap_err();
    assert!(matches!(
        error,
        StorageError::OutOfOrderSequence {
            expected: 5,
            received: 9,
            ..
        }
    ));
    assert_eq!(error.error_code(), ErrorCode::OutOfOrderSequenceNumber);

    // New epoch must start at 0.
    let bad_new_epoch = BatchSpec::new("p", 1, NOW).idempotent(42, 1, 5).build();
    assert_eq!(
        log.append(&bad_new_epoch, 0, NOW).unwrap_err().error_code(),
        ErrorCode::OutOfOrderSequenceNumber
    );
    let new_epoch = BatchSpec::new("p", 1, NOW).idempotent(42, 1, 0).build();
    assert_eq!(log.append(&new_epoch, 0, NOW).unwrap().base_offset, 7);

    // Old epoch.
    let old = BatchSpec::new("p", 1, NOW).idempotent(42, 0, 5).build();
    let error = log.append(&old, 0, NOW).unwrap_err();
    assert!(matches!(
        error,
        StorageError::InvalidProducerEpoch {
            current: 1,
            received: 0,
            ..
        }
    ));
    assert_eq!(error.error_code(), ErrorCode::InvalidProducerEpoch);

    // Unknown producer id at a non-zero sequence is accepted.
    let stranger = BatchSpec::new("s", 1, NOW).idempotent(7, 3, 100).build();
    assert_eq!(log.append(&stranger, 0, NOW).unwrap().base_offset, 8);
    assert_eq!(log.log_end_offset(), 9);
    log.close().unwrap();

    // State survives a clean reopen (snapshot) ...
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.producer_epoch(42), Some(1));
    let retry = log.append(&new_epoch, 0, NOW).unwrap();
    assert!(retry.duplicate && retry.base_offset == 7);
    let next = BatchSpec::new("p", 1, NOW).idempotent(42, 1, 1).build();
    assert_eq!(log.append(&next, 0, NOW).unwrap().base_offset, 9);
    drop(log);

    // ... and an unclean one (replay of batch headers after the last snapshot).
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let retry = log.append(&next, 0, NOW).unwrap();
    assert!(retry.duplicate && retry.base_offset == 9);
    assert_eq!(
        log.append(&old, 0, NOW).unwrap_err().error_code(),
        ErrorCode::InvalidProducerEpoch
    );
    drop(log);

    // Without any snapshot the state is rebuilt from the log.
    for name in log_files(dir.path(), ".snapshot") {
        fs::remove_file(dir.path().join(name)).unwrap();
    }
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    let retry = log.append(&second, 0, NOW);
    // `second` is no longer among the cached batches of epoch 1: an old epoch now.
    assert_eq!(
        retry.unwrap_err().error_code(),
        ErrorCode::InvalidProducerEpoch
    );
    assert!(log.append(&next, 0, NOW).unwrap().duplicate);
}

#[test]
fn multiple_batches_from_one_producer_in_one_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    let mut records = BatchSpec::new("a", 2, NOW)
        .idempotent(1, 0, 0)
        .build()
        .to_vec();
    records.extend_from_slice(&BatchSpec::new("b", 2, NOW).idempotent(1, 0, 2).build());
    let outcome = log.append(&Bytes::from(records), 0, NOW).unwrap();
    assert_eq!(
        (
            outcome.base_offset,
            outcome.last_offset,
            outcome.record_count
        ),
        (0, 3, 4)
    );
    let mut gap = BatchSpec::new("c", 1, NOW)
        .idempotent(1, 0, 4)
        .build()
        .to_vec();
    gap.extend_from_slice(&BatchSpec::new("d", 1, NOW).idempotent(1, 0, 6).build());
    assert_eq!(
        log.append(&Bytes::from(gap), 0, NOW)
            .unwrap_err()
            .error_code(),
        ErrorCode::OutOfOrderSequenceNumber
    );
    assert_eq!(log.log_end_offset(), 4);
}

#[test]
fn offset_for_timestamp_and_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(400)).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert_eq!(log.max_timestamp(), None);
    // Timestamps 1000 + 10*i for offsets 0..40, in batches of 4 records.
    for b in 0..10 {
        let mut spec = BatchSpec::new("t", 4, 0);
        spec.timestamps = (0..4).map(|i| 1000 + 10 * (b * 4 + i)).collect();
        log.append_committed(&spec.build(), 0, NOW).unwrap();
    }
    assert!(log.segment_count() > 1);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 1000)));
    assert_eq!(log.offset_for_timestamp(1000).unwrap(), Some((0, 1000)));
    assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some((1, 1010)));
    assert_eq!(log.offset_for_timestamp(1250).unwrap(), Some((25, 1250)));
    assert_eq!(log.offset_for_timestamp(1255).unwrap(), Some((26, 1260)));
    assert_eq!(log.offset_for_timestamp(1390).unwrap(), Some((39, 1390)));
    assert_eq!(log.offset_for_timestamp(1391).unwrap(), None);
    assert_eq!(log.max_timestamp(), Some((1390, 39)));
    // Records below the log start are never answered.
    log.delete_records_before(6).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((6, 1060)));

    // Max timestamp in the middle of a batch.
    let mut spec = BatchSpec::new("m", 3, 0);
    spec.timestamps = vec![5000, 9000, 7000];
    log.append_committed(&spec.build(), 0, NOW).unwrap();
    assert_eq!(log.max_timestamp(), Some((9000, 41)));
    assert_eq!(log.offset_for_timestamp(6000).unwrap(), Some((41, 9000)));
}

#[test]
fn message_too_large_and_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 100,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    let big = batch("big", 10, NOW);
    let error = log.append(&big, 0, NOW).unwrap_err();
    assert!(matches!(
        error,
        StorageError::MessageTooLarge { max: 100, .. }
    ));
    assert_eq!(error.error_code(), ErrorCode::MessageTooLarge);

    let mut corrupt = batch("c", 1, NOW).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let error = log.append(&Bytes::from(corrupt), 0, NOW).unwrap_err();
    assert_eq!(error.error_code(), ErrorCode::CorruptMessage);
    assert_eq!(
        log.append(&Bytes::new(), 0, NOW).unwrap_err().error_code(),
        ErrorCode::InvalidRecord
    );
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn log_append_time_stamps_batches() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type_log_append: true,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    let outcome = log.append(&batch("l", 3, 5), 0, NOW).unwrap();
    assert_eq!(outcome.log_append_time, NOW);
    let data = log.read(0, 1 << 20, i64::MAX, true).unwrap();
    // decode_records validates the recomputed CRC.
    let records = decode_records(&data);
    assert!(records.iter().all(|record| record.1 == NOW));
    assert_eq!(log.max_timestamp(), Some((NOW, 0)));
    assert_eq!(log.offset_for_timestamp(NOW).unwrap(), Some((0, NOW)));
}

#[test]
fn flush_every_message_and_truncate_to() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 1,
        ..small_segments(500)
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for i in 0..20 {
        let spec = BatchSpec::new("f", 2, NOW + i).idempotent(3, 0, (i * 2) as i32);
        log.append(&spec.build(), 0, NOW).unwrap();
    }
    log.flush().unwrap();
    log.maybe_flush_by_time(NOW).unwrap();
    assert!(log.segment_count() > 2);
    log.truncate_to(15).unwrap();
    // Cut at the start of the batch holding 15.
    assert_eq!(log.log_end_offset(), 14);
    assert_eq!(read_all(&log, 0).len(), 14);
    // Producer state follows the truncation: sequence 14 is next.
    let next = BatchSpec::new("f", 2, NOW).idempotent(3, 0, 14).build();
    assert_eq!(log.append(&next, 0, NOW).unwrap().base_offset, 14);
    drop(log);
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), 16);
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        log.append(&batch("x", 1, NOW), 0, NOW).unwrap().base_offset,
        0
    );
}

#[test]
fn clean_shutdown_marker_lives_until_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join(strom_storage::log::CLEAN_SHUTDOWN_MARKER);
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    log.append(&batch("a", 2, NOW), 0, NOW).unwrap();
    assert!(!marker.exists());
    log.flush().unwrap();
    assert!(marker.exists());
    log.append(&batch("b", 2, NOW), 0, NOW).unwrap();
    assert!(!marker.exists());
    log.close().unwrap();
    assert!(marker.exists());

    // A clean open trusts the tail and removes the marker.
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert!(!marker.exists());
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(read_all(&log, 0).len(), 4);
    log.append(&batch("c", 1, NOW), 0, NOW).unwrap();
    drop(log);

    // A torn tail behind a stale marker is still caught (the indexes do not match the file).
    fs::write(&marker, b"").unwrap();
    let path = last_log_file(dir.path());
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - 5).unwrap();
    drop(file);
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 4);
}

#[test]
fn compact_policy_skips_time_and_size_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_policy_delete: false,
        retention_ms: 1,
        retention_bytes: 1,
        ..small_segments(200)
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    for _ in 0..5 {
        log.append(&batch("x", 2, NOW), 0, NOW).unwrap();
    }
    assert!(log.segment_count() > 1);
    assert_eq!(log.apply_retention(NOW + 1_000_000).unwrap(), 0);
    assert_eq!(log.log_start_offset(), 0);
}

#[test]
fn timestamp_lookups_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 0,
        ..small_segments(700)
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for b in 0..20i64 {
        let mut spec = BatchSpec::new("t", 3, 0);
        spec.timestamps = (0..3).map(|i| 10_000 + 100 * (b * 3 + i)).collect();
        log.append(&spec.build(), 0, NOW).unwrap();
    }
    let probes = [0, 10_000, 10_050, 12_345, 15_900, 15_901];
    let before: Vec<_> = probes
        .iter()
        .map(|&ts| log.offset_for_timestamp(ts).unwrap())
        .collect();
    assert_eq!(before[2], Some((1, 10_100)));
    assert_eq!(before[3], Some((24, 12_400)));
    assert_eq!(before[5], None);
    let max = log.max_timestamp();
    assert_eq!(max, Some((15_900, 59)));
    drop(log);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    let after: Vec<_> = probes
        .iter()
        .map(|&ts| log.offset_for_timestamp(ts).unwrap())
        .collect();
    assert_eq!(before, after);
    assert_eq!(log.max_timestamp(), max);
}
