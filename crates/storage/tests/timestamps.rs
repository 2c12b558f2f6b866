//! Integration tests of timestamp rules: ListOffsets MAX_TIMESTAMP inside compressed batches
//! (Kafka 3.8+ semantics) and the `message.timestamp.*.max.ms` bounds on append.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::BatchSpec;
use strom_protocol::records::{split_batches, BatchBuilder, BatchHeader, Compression};
use strom_protocol::ErrorCode;
use strom_storage::{LogConfig, PartitionLog, StorageError};

const NOW: i64 = 1_700_000_000_000;

fn compressed_batch(compression: Compression, timestamps: &[i64]) -> Bytes {
    let mut builder = BatchBuilder::new(0, compression, timestamps[0]);
    for (i, &timestamp) in timestamps.iter().enumerate() {
        builder.push(
            timestamp,
            Some(Bytes::from(format!("key-{i}"))),
            Some(Bytes::from(format!("value-{i}"))),
            Vec::new(),
        );
    }
    builder.build()
}

#[test]
fn max_timestamp_inside_compressed_batches_is_the_first_record_carrying_it() {
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        // Offsets 0..=2, max 1002 at offset 2.
        log.append(&common::batch("u", 3, 1000), 0, NOW).unwrap();
        // Offsets 3..=7: the max 9000 first appears at offset 4, again at 5.
        let batch = compressed_batch(compression, &[5000, 9000, 9000, 7000, 8000]);
        log.append(&batch, 0, NOW).unwrap();
        assert_eq!(log.max_timestamp(), Some((9000, 4)), "{compression:?}");
        assert_eq!(log.try_max_timestamp().unwrap(), Some((9000, 4)));
        // A later batch with a smaller max changes nothing; an equal one neither (first wins).
        log.append(&compressed_batch(compression, &[6000, 9000]), 0, NOW)
            .unwrap();
        assert_eq!(log.max_timestamp(), Some((9000, 4)));

        // Same answer after a clean reopen (indexes trusted) and after a crash (tail rescanned).
        log.close().unwrap();
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(log.max_timestamp(), Some((9000, 4)));
        drop(log);
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(log.max_timestamp(), Some((9000, 4)));
    }
}

#[test]
fn max_timestamp_of_a_compressed_batch_in_a_sealed_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    let batch = compressed_batch(Compression::Lz4, &[100, 300, 200]);
    log.append(&batch, 0, NOW).unwrap();
    while log.segment_count() < 3 {
        log.append(&compressed_batch(Compression::Lz4, &[50, 60]), 0, NOW)
            .unwrap();
    }
    assert_eq!(log.max_timestamp(), Some((300, 1)));
}

#[test]
fn max_timestamp_under_log_append_time_is_the_first_record_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type_log_append: true,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    log.append(&common::batch("a", 2, 5), 0, NOW).unwrap();
    let batch = compressed_batch(Compression::Gzip, &[1, 2, 3]);
    let outcome = log.append(&batch, 0, NOW + 10).unwrap();
    assert_eq!(outcome.base_offset, 2);
    assert_eq!(log.max_timestamp(), Some((NOW + 10, 2)));
    assert_eq!(
        log.offset_for_timestamp(NOW + 1).unwrap(),
        Some((2, NOW + 10))
    );
}

#[test]
fn uncompressed_max_timestamp_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    let mut spec = BatchSpec::new("m", 4, 0);
    spec.timestamps = vec![10, 40, 40, 20];
    log.append(&spec.build(), 0, NOW).unwrap();
    assert_eq!(log.max_timestamp(), Some((40, 1)));
}

fn bounded(before: Option<&str>, after: Option<&str>, difference: Option<&str>) -> LogConfig {
    let overrides: Vec<(String, String)> = [
        ("message.timestamp.before.max.ms", before),
        ("message.timestamp.after.max.ms", after),
        ("message.timestamp.difference.max.ms", difference),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.map(|value| (key.to_string(), value.to_string())))
    .collect();
    LogConfig::default().with_overrides(&overrides).unwrap()
}

fn spec_with(timestamps: &[i64]) -> BatchSpec {
    let mut spec = BatchSpec::new("ts", timestamps.len(), 0);
    spec.timestamps = timestamps.to_vec();
    spec
}

#[test]
fn timestamps_too_old_are_refused_with_kafkas_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), bounded(Some("1000"), None, None)).unwrap();
    log.append(&spec_with(&[NOW - 1000, NOW + 1_000_000]).build(), 0, NOW)
        .unwrap();
    let error = log
        .append(&spec_with(&[NOW - 500, NOW - 1001, NOW]).build(), 0, NOW)
        .unwrap_err();
    assert_eq!(error.error_code(), ErrorCode::InvalidTimestamp);
    assert!(matches!(
        error,
        StorageError::InvalidTimestamp {
            timestamp,
            offset: 1,
            batch_index: 1,
            lower,
            upper: i64::MAX,
        } if timestamp == NOW - 1001 && lower == NOW - 1000
    ));
    assert_eq!(
        error.to_string(),
        format!(
            "Timestamp {} of message with offset 1 is out of range. The timestamp should be within [{}, {}]",
            NOW - 1001,
            NOW - 1000,
            i64::MAX
        )
    );
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn timestamps_too_far_ahead_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), bounded(None, Some("1000"), None)).unwrap();
    log.append(&spec_with(&[0, NOW + 1000]).build(), 0, NOW)
        .unwrap();
    let error = log
        .append(&spec_with(&[NOW + 1001]).build(), 0, NOW)
        .unwrap_err();
    assert!(matches!(
        error,
        StorageError::InvalidTimestamp { offset: 0, batch_index: 0, upper, .. } if upper == NOW + 1000
    ));
    // Records without timestamp (-1) are never out of range.
    log.append(&spec_with(&[-1]).build(), 0, NOW).unwrap();
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn difference_max_ms_bounds_both_sides_unless_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), bounded(None, None, Some("100"))).unwrap();
    for timestamp in [NOW - 101, NOW + 101] {
        let error = log
            .append(&spec_with(&[timestamp]).build(), 0, NOW)
            .unwrap_err();
        assert_eq!(error.error_code(), ErrorCode::InvalidTimestamp);
    }
    log.append(&spec_with(&[NOW - 100, NOW + 100]).build(), 0, NOW)
        .unwrap();
    // The new settings take precedence over the deprecated one, side by side.
    log.set_config(bounded(Some("10000"), None, Some("100")));
    log.append(&spec_with(&[NOW - 10_000]).build(), 0, NOW)
        .unwrap();
    assert!(log
        .append(&spec_with(&[NOW + 101]).build(), 0, NOW)
        .is_err());
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn one_bad_batch_refuses_the_whole_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut log =
        PartitionLog::open(dir.path(), bounded(Some("1000"), Some("1000"), None)).unwrap();
    let mut records = spec_with(&[NOW, NOW]).build().to_vec();
    records.extend_from_slice(&spec_with(&[NOW, NOW - 5000]).build());
    let error = log.append(&Bytes::from(records), 0, NOW).unwrap_err();
    assert!(matches!(
        error,
        StorageError::InvalidTimestamp {
            offset: 1,
            batch_index: 1,
            ..
        }
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn compressed_batches_are_checked_and_the_offending_record_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut log =
        PartitionLog::open(dir.path(), bounded(Some("1000"), Some("1000"), None)).unwrap();
    log.append(
        &compressed_batch(Compression::Zstd, &[NOW, NOW + 999, NOW - 999]),
        0,
        NOW,
    )
    .unwrap();
    let error = log
        .append(
            &compressed_batch(Compression::Gzip, &[NOW, NOW + 10, NOW + 5000, NOW + 6000]),
            0,
            NOW,
        )
        .unwrap_err();
    assert!(matches!(
        error,
        StorageError::InvalidTimestamp { offset: 2, batch_index: 2, timestamp, .. }
            if timestamp == NOW + 5000
    ));
    let error = log
        .append(
            &compressed_batch(Compression::Lz4, &[NOW - 2000, NOW]),
            0,
            NOW,
        )
        .unwrap_err();
    assert!(matches!(
        error,
        StorageError::InvalidTimestamp {
            offset: 0,
            batch_index: 0,
            ..
        }
    ));
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn log_append_time_ignores_the_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type_log_append: true,
        ..bounded(Some("0"), Some("0"), None)
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    log.append(&spec_with(&[1, NOW * 2]).build(), 0, NOW)
        .unwrap();
    assert_eq!(log.log_end_offset(), 2);
}

/// `batch` with its header max timestamp set to -1 and the CRC fixed up, as older clients (sarama
/// 1.22) write CreateTime batches.
fn without_max_timestamp(batch: &Bytes) -> Bytes {
    let mut raw = batch.to_vec();
    raw[35..43].copy_from_slice(&(-1i64).to_be_bytes());
    let crc = crc32c::crc32c(&raw[21..]);
    raw[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(raw)
}

#[test]
fn batches_without_a_header_max_timestamp_are_found_by_timestamp() {
    for compression in [Compression::None, Compression::Lz4] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        // Offsets 0..=2 at NOW, NOW + 10, NOW + 20; offsets 3..=4 at NOW + 30, NOW + 25.
        let first =
            without_max_timestamp(&compressed_batch(compression, &[NOW, NOW + 10, NOW + 20]));
        let second = without_max_timestamp(&compressed_batch(compression, &[NOW + 30, NOW + 25]));
        assert_eq!(BatchHeader::parse(&first).unwrap().max_timestamp, -1);
        log.append(&first, 0, NOW).unwrap();
        log.append(&second, 0, NOW).unwrap();
        for (target, expected) in [
            (0, Some((0, NOW))),
            (NOW + 5, Some((1, NOW + 10))),
            (NOW + 21, Some((3, NOW + 30))),
            (NOW + 26, Some((3, NOW + 30))),
            (NOW + 31, None),
        ] {
            assert_eq!(
                log.offset_for_timestamp(target).unwrap(),
                expected,
                "{compression:?} target {target}"
            );
        }
        assert_eq!(log.max_timestamp(), Some((NOW + 30, 3)), "{compression:?}");
        // The stored header carries the derived max timestamp (Kafka sets it on append), with a
        // valid CRC, so followers, recovery and consumers see it too.
        let stored = log.read(0, 1 << 20, i64::MAX, true).unwrap();
        let headers: Vec<i64> = split_batches(&stored)
            .unwrap()
            .iter()
            .map(|(header, _)| header.max_timestamp)
            .collect();
        assert_eq!(headers, [NOW + 20, NOW + 30], "{compression:?}");
        // Still found after a crash, when the tail's indexes are rebuilt from the batches.
        drop(log);
        let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(
            log.offset_for_timestamp(NOW + 21).unwrap(),
            Some((3, NOW + 30))
        );
    }
}
