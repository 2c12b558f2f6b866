//! Integration tests of what replication needs from a partition log: the high watermark (moved by
//! its owner only, clamped, checkpointed, bounding DeleteRecords, retention and the cleaner), the
//! recovery point, the leader-epoch cache and the follower append.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use strom_protocol::records::{split_batches, BatchBuilder, Compression};
use strom_storage::leader_epoch::{EpochEntry, LEADER_EPOCH_CHECKPOINT};
use strom_storage::log::{HIGH_WATERMARK_CHECKPOINT, RECOVERY_POINT_CHECKPOINT};
use strom_storage::{compact_now, LogConfig, PartitionLog, StorageError};

const NOW: i64 = 1_700_000_000_000;

/// `count` keyed records with timestamps `timestamp + i`.
fn records(count: usize, timestamp: i64) -> Bytes {
    let mut builder = BatchBuilder::new(0, Compression::None, timestamp);
    for i in 0..count {
        builder.push(
            timestamp + i as i64,
            Some(Bytes::from(format!("k{}", i % 3))),
            Some(Bytes::from(format!("value-{i}"))),
            Vec::new(),
        );
    }
    builder.build()
}

fn small_segments(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

fn checkpoint(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap()
}

/// Every stored batch from the log start, read segment by segment.
fn all_batches(log: &PartitionLog) -> Bytes {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
        let (last, _) = split_batches(&data).unwrap().pop().unwrap();
        offset = last.last_offset() + 1;
        out.extend_from_slice(&data);
    }
    Bytes::from(out)
}

fn epochs(log: &PartitionLog) -> Vec<(i32, i64)> {
    log.leader_epochs()
        .entries()
        .iter()
        .map(
            |&EpochEntry {
                 epoch,
                 start_offset,
             }| (epoch, start_offset),
        )
        .collect()
}

#[test]
fn the_leader_append_leaves_the_high_watermark_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((log.high_watermark(), log.log_end_offset()), (0, 0));
    log.append(&records(3, NOW), 0, NOW).unwrap();
    assert_eq!((log.high_watermark(), log.log_end_offset()), (0, 3));
    // Clamped to [log start, log end].
    assert_eq!(log.update_high_watermark(10), 3);
    assert_eq!(log.update_high_watermark(-5), 0);
    // DeleteRecords stops at the high watermark, as in Kafka.
    assert!(matches!(
        log.delete_records_before(2),
        Err(StorageError::OffsetOutOfRange { end: 0, .. })
    ));
    assert_eq!(log.update_high_watermark(2), 2);
    assert_eq!(log.delete_records_before(2).unwrap(), 2);
    assert_eq!(log.update_high_watermark(0), 2, "never below the log start");
    // Reads are bounded by whatever the caller passes: consumers pass the high watermark.
    assert!(log
        .read(2, 1 << 20, log.high_watermark(), true)
        .unwrap()
        .is_empty());
    assert!(!log
        .read(2, 1 << 20, log.log_end_offset(), true)
        .unwrap()
        .is_empty());
}

#[test]
fn high_watermark_and_recovery_point_are_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    log.append(&records(5, NOW), 0, NOW).unwrap();
    log.update_high_watermark(2);
    assert_eq!(log.recovery_point(), 0);
    log.close().unwrap();
    assert_eq!(checkpoint(dir.path(), HIGH_WATERMARK_CHECKPOINT), "0\n2\n");
    assert_eq!(checkpoint(dir.path(), RECOVERY_POINT_CHECKPOINT), "0\n5\n");

    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!((log.high_watermark(), log.recovery_point()), (2, 5));
    log.append(&records(5, NOW), 0, NOW).unwrap();
    log.update_high_watermark(7);
    // The periodic duty writes a moved high watermark once its interval has passed.
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 6_000;
    log.maybe_roll_and_flush(later).unwrap();
    assert_eq!(checkpoint(dir.path(), HIGH_WATERMARK_CHECKPOINT), "0\n7\n");
    log.update_high_watermark(10);
    drop(log); // crash: the last move is lost, the checkpointed one stands
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.high_watermark(), 7);
    assert_eq!(
        log.recovery_point(),
        5,
        "the unflushed tail is past the recovery point"
    );

    // A checkpoint beyond the log (its tail was lost) is clamped to the log end.
    drop(log);
    fs::write(dir.path().join(HIGH_WATERMARK_CHECKPOINT), "0\n99\n").unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.high_watermark(), 10);
}

#[test]
fn flushing_moves_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let one = records(2, NOW);
    let config = LogConfig {
        flush_messages: 4,
        ..small_segments(one.len() as u64 * 3)
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    log.append(&one, 0, NOW).unwrap();
    assert_eq!(log.recovery_point(), 0);
    log.append(&one, 0, NOW).unwrap();
    assert_eq!(
        log.recovery_point(),
        4,
        "flush.messages fsynced the segment"
    );
    log.append(&one, 0, NOW).unwrap();
    log.append(&one, 0, NOW).unwrap();
    // The roll before the fourth batch fsynced the first segment and wrote the checkpoint.
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.recovery_point(), 6);
    assert_eq!(checkpoint(dir.path(), RECOVERY_POINT_CHECKPOINT), "0\n6\n");
}

/// Flips a byte inside the records of the batch at `position` of a `.log` file (its CRC then fails).
fn corrupt(path: &Path, position: usize) {
    let mut data = fs::read(path).unwrap();
    data[position + 70] ^= 0xff;
    fs::write(path, data).unwrap();
}

#[test]
fn segments_past_the_recovery_point_are_validated_on_open() {
    let one = records(2, NOW);
    let config = small_segments(one.len() as u64 * 2);
    let build = |dir: &Path| {
        let mut log = PartitionLog::open(dir, config.clone()).unwrap();
        for _ in 0..8 {
            log.append(&one, 0, NOW).unwrap();
        }
        assert_eq!(log.segment_count(), 4);
        drop(log); // crash
                   // The second segment ([4, 8)) gets a corrupt second batch (offsets 6, 7).
        corrupt(&dir.join(format!("{:020}.log", 4)), one.len());
    };

    // Below the recovery point, the sealed segment is trusted (its indexes check out).
    let trusted = tempfile::tempdir().unwrap();
    build(trusted.path());
    let log = PartitionLog::open(trusted.path(), config.clone()).unwrap();
    assert_eq!((log.log_end_offset(), log.segment_count()), (16, 4));

    // Past it, it is validated: cut at the corrupt batch, the segments after it deleted.
    let validated = tempfile::tempdir().unwrap();
    build(validated.path());
    fs::write(validated.path().join(RECOVERY_POINT_CHECKPOINT), "0\n4\n").unwrap();
    let mut log = PartitionLog::open(validated.path(), config).unwrap();
    assert_eq!((log.log_end_offset(), log.segment_count()), (6, 2));
    assert_eq!(log.recovery_point(), 4);
    let remaining = fs::read_dir(validated.path())
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .and_then(|e| e.to_str())
                == Some("log")
        })
        .count();
    assert_eq!(remaining, 2);
    assert_eq!(log.append(&one, 0, NOW).unwrap().base_offset, 6);
}

#[test]
fn leader_epochs_are_recorded_checkpointed_and_answered_like_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_segments(400)).unwrap();
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
    for epoch in [0, 0, 3, 3, 5] {
        log.append(&records(2, NOW), epoch, NOW).unwrap();
    }
    assert_eq!(epochs(&log), [(0, 0), (3, 4), (5, 8)]);
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(log.end_offset_for_epoch(5), (5, 10));
    assert_eq!(log.end_offset_for_epoch(3), (3, 8));
    assert_eq!(log.end_offset_for_epoch(4), (3, 8));
    assert_eq!(log.end_offset_for_epoch(0), (0, 4));
    assert_eq!(log.end_offset_for_epoch(7), (-1, -1));
    assert_eq!(
        checkpoint(dir.path(), LEADER_EPOCH_CHECKPOINT),
        "0\n3\n0 0\n3 4\n5 8\n"
    );
    // Every batch carries its epoch.
    let stored = all_batches(&log);
    let stamped: Vec<i32> = split_batches(&stored)
        .unwrap()
        .iter()
        .map(|(header, _)| header.partition_leader_epoch)
        .collect();
    assert_eq!(stamped, [0, 0, 3, 3, 5]);

    // Truncation forgets the epochs it removes.
    log.truncate_to(7).unwrap();
    assert_eq!(epochs(&log), [(0, 0), (3, 4)]);
    assert_eq!(log.end_offset_for_epoch(3), (3, 6));
    assert_eq!(
        checkpoint(dir.path(), LEADER_EPOCH_CHECKPOINT),
        "0\n2\n0 0\n3 4\n"
    );
    // A leader's epoch recorded at the log end before it wrote anything goes when a follower
    // truncates exactly there (it must stop naming an epoch it holds no batch of).
    log.assign_leader_epoch(9).unwrap();
    assert_eq!(log.latest_epoch(), Some(9));
    log.assign_leader_epoch(8).unwrap();
    assert_eq!(
        epochs(&log),
        [(0, 0), (3, 4), (9, 6)],
        "older epochs are ignored"
    );
    log.truncate_to(log.log_end_offset()).unwrap();
    assert_eq!(epochs(&log), [(0, 0), (3, 4)]);
    // The log start moving up moves the first epoch's start.
    log.update_high_watermark(6);
    log.delete_records_before(5).unwrap();
    assert_eq!(epochs(&log), [(3, 5)]);
    assert_eq!(log.end_offset_for_epoch(1), (1, 5), "below every epoch");
    log.close().unwrap();

    let log = PartitionLog::open(dir.path(), small_segments(400)).unwrap();
    assert_eq!(epochs(&log), [(3, 5)]);
    drop(log);
    // Without its checkpoint (a log older than the cache), the cache is rebuilt from the batches.
    fs::remove_file(dir.path().join(LEADER_EPOCH_CHECKPOINT)).unwrap();
    let log = PartitionLog::open(dir.path(), small_segments(400)).unwrap();
    assert_eq!(epochs(&log), [(3, 5)]);
    assert_eq!(
        checkpoint(dir.path(), LEADER_EPOCH_CHECKPOINT),
        "0\n1\n3 5\n"
    );
}

#[test]
fn the_follower_append_keeps_the_leaders_batches() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let config = small_segments(600);
    let mut leader = PartitionLog::open(leader_dir.path(), config.clone()).unwrap();
    let mut follower = PartitionLog::open(follower_dir.path(), config).unwrap();
    let mut builder = BatchBuilder::new(0, Compression::Zstd, NOW).producer(42, 1, 0);
    builder.push(NOW, Some(Bytes::from_static(b"k")), None, Vec::new());
    let ranges = [
        leader.append(&records(3, NOW), 1, NOW).unwrap(),
        leader.append(&builder.build(), 1, NOW).unwrap(),
        leader.append(&records(4, NOW + 9), 2, NOW).unwrap(),
    ];
    for outcome in &ranges {
        let batches = leader
            .read(outcome.base_offset, 1 << 20, outcome.last_offset + 1, true)
            .unwrap();
        let appended = follower.append_as_follower(&batches).unwrap();
        assert_eq!(
            (appended.base_offset, appended.last_offset),
            (outcome.base_offset, outcome.last_offset)
        );
    }
    assert_eq!(
        follower.high_watermark(),
        0,
        "the follower's owner moves it"
    );
    assert_eq!(epochs(&follower), [(1, 0), (2, 4)]);
    assert_eq!(follower.producer_epoch(42), Some(1));
    assert_eq!(all_batches(&follower), all_batches(&leader));

    // The same batches again: below the log end.
    let again = leader.read(4, 1 << 20, i64::MAX, true).unwrap();
    assert!(matches!(
        follower.append_as_follower(&again),
        Err(StorageError::UnexpectedAppendOffset {
            first_offset: 4,
            log_end_offset: 8
        })
    ));
    // Batches out of order.
    let next = |base: i64| {
        let mut builder = BatchBuilder::new(base, Compression::None, NOW).partition_leader_epoch(2);
        builder.push(NOW, Some(Bytes::from_static(b"k")), None, Vec::new());
        builder.build()
    };
    let mut out_of_order = next(9).to_vec();
    out_of_order.extend_from_slice(&next(8));
    assert!(matches!(
        follower.append_as_follower(&Bytes::from(out_of_order)),
        Err(StorageError::OffsetsOutOfOrder {
            previous_last_offset: 9,
            base_offset: 8
        })
    ));
    // A corrupt batch.
    let mut corrupt = next(8).to_vec();
    corrupt[65] ^= 1;
    assert!(matches!(
        follower.append_as_follower(&Bytes::from(corrupt)),
        Err(StorageError::CorruptRecords(_))
    ));
    assert_eq!(follower.log_end_offset(), 8);
    // A gap (whole batches compacted away on the leader) is accepted, and reads skip it.
    follower.append_as_follower(&next(12)).unwrap();
    assert_eq!(follower.log_end_offset(), 13);
    let after_gap = follower.read(9, 1 << 20, i64::MAX, true).unwrap();
    assert_eq!(split_batches(&after_gap).unwrap()[0].0.base_offset, 12);
}

#[test]
fn retention_and_the_cleaner_stop_at_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let one = records(2, NOW);
    let config = LogConfig {
        retention_ms: 1_000,
        ..small_segments(one.len() as u64 * 2)
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    for _ in 0..6 {
        log.append(&one, 0, NOW).unwrap();
    }
    assert_eq!(log.segment_count(), 3);
    let far_later = NOW + 1_000_000;
    assert_eq!(
        log.apply_retention(far_later).unwrap(),
        0,
        "nothing committed"
    );
    log.update_high_watermark(5);
    assert_eq!(log.apply_retention(far_later).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 4);
    log.update_high_watermark(12);
    assert_eq!(log.apply_retention(far_later).unwrap(), 2);
    assert_eq!((log.log_start_offset(), log.high_watermark()), (12, 12));

    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_policy_compact: true,
        cleanup_policy_delete: false,
        min_cleanable_dirty_ratio: 0.0,
        ..small_segments(one.len() as u64 * 2)
    };
    let mut log = PartitionLog::open(dir.path(), config).unwrap();
    for _ in 0..6 {
        log.append(&one, 0, NOW).unwrap();
    }
    log.update_high_watermark(7);
    let log = Mutex::new(log);
    let stats = compact_now(&log, NOW).unwrap().expect("a pass over [0, 4)");
    assert_eq!(
        stats.first_dirty_offset, 4,
        "the segment [4, 8) reaches past the watermark"
    );
    let mut log = log.into_inner().unwrap();
    let untouched = log.read(4, 1 << 20, i64::MAX, true).unwrap();
    assert_eq!(untouched.len(), one.len() * 2);
    log.update_high_watermark(12);
    let log = Mutex::new(log);
    let stats = compact_now(&log, NOW)
        .unwrap()
        .expect("a pass up to the active segment");
    assert_eq!(stats.first_dirty_offset, 8);
}
