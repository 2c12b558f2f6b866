//! Property tests of the replication paths: (a) a follower appending a leader's batches (read back
//! with `read`) ends with the leader's files, byte for byte; (b) truncating a follower and appending
//! the same batches again gives the log a fresh follower builds; (c) under any sequence of leader
//! and follower appends, truncations, high watermark moves, DeleteRecords and reopens,
//! `log start <= high watermark <= log end` and `recovery point <= log end`.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;
use strom_protocol::records::{BatchBuilder, Compression};
use strom_storage::log::LOG_START_CHECKPOINT;
use strom_storage::{AppendOutcome, LogConfig, PartitionLog};

const NOW: i64 = 1_700_000_000_000;
const PRODUCER_ID: i64 = 7;

/// One batch of a leader append.
#[derive(Debug, Clone)]
struct BatchShape {
    records: usize,
    value_len: usize,
    compressed: bool,
    idempotent: bool,
}

/// One leader append: its batches, and whether the leader epoch goes up first.
#[derive(Debug, Clone)]
struct LeaderAppend {
    batches: Vec<BatchShape>,
    new_epoch: bool,
}

fn batch_shape() -> impl Strategy<Value = BatchShape> {
    (1usize..6, 0usize..100, any::<bool>(), any::<bool>()).prop_map(
        |(records, value_len, compressed, idempotent)| BatchShape {
            records,
            value_len,
            compressed,
            idempotent,
        },
    )
}

fn leader_append() -> impl Strategy<Value = LeaderAppend> {
    (
        proptest::collection::vec(batch_shape(), 1..4),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(batches, new_epoch)| LeaderAppend { batches, new_epoch })
}

/// Builds the records of `append` (as a producer sends them), numbering idempotent batches from
/// `*sequence` and records' timestamps from `*clock`.
fn producer_records(append: &LeaderAppend, sequence: &mut i32, clock: &mut i64) -> Bytes {
    let mut out = Vec::new();
    for shape in &append.batches {
        let codec = if shape.compressed {
            Compression::Lz4
        } else {
            Compression::None
        };
        let mut builder = BatchBuilder::new(0, codec, *clock);
        if shape.idempotent {
            builder = builder.producer(PRODUCER_ID, 0, *sequence);
            *sequence += shape.records as i32;
        }
        for i in 0..shape.records {
            builder.push(
                *clock + (i as i64 * 7) % 5,
                Some(Bytes::from(format!("key-{}", i % 4))),
                Some(Bytes::from(vec![b'a' + (i % 26) as u8; shape.value_len])),
                Vec::new(),
            );
        }
        *clock += 10;
        out.extend_from_slice(&builder.build());
    }
    Bytes::from(out)
}

/// A leader log built from `appends` in `dir`; returns it and the bytes of each append as stored
/// (read back through `read`, bounded by the append's last offset).
fn build_leader(
    dir: &Path,
    config: &LogConfig,
    appends: &[LeaderAppend],
) -> (PartitionLog, Vec<Bytes>) {
    let mut log = PartitionLog::open(dir, config.clone()).unwrap();
    let (mut sequence, mut clock, mut epoch) = (0, NOW, 0);
    let mut stored = Vec::new();
    for append in appends {
        epoch += i32::from(append.new_epoch);
        let records = producer_records(append, &mut sequence, &mut clock);
        let AppendOutcome {
            base_offset,
            last_offset,
            duplicate,
            ..
        } = log.append(&records, epoch, NOW).unwrap();
        assert!(!duplicate);
        stored.push(
            log.read(base_offset, 1 << 24, last_offset + 1, true)
                .unwrap(),
        );
    }
    (log, stored)
}

/// Every file of a partition directory but `skip`, by name.
fn files(dir: &Path, skip: &[&str]) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .map(|entry| {
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .filter(|(name, _)| !skip.contains(&name.as_str()))
        .collect()
}

fn config(segment_bytes: u64, index_interval: usize, log_append_time: bool) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: index_interval,
        timestamp_type_log_append: log_append_time,
        ..LogConfig::default()
    }
}

/// A step of the high watermark property.
#[derive(Debug, Clone)]
enum Step {
    LeaderAppend {
        records: usize,
        new_epoch: bool,
    },
    /// A leader's batch at the log end plus `gap` (offsets compacted away on the leader).
    FollowerAppend {
        records: usize,
        gap: i64,
        new_epoch: bool,
    },
    /// Truncate at this fraction of the log.
    Truncate(f64),
    /// Move the high watermark to this fraction of the log (outside [0, 1]: out of range).
    UpdateHighWatermark(f64),
    /// DeleteRecords at this fraction of [log start, high watermark].
    DeleteRecords(f64),
    Reopen {
        clean: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1usize..5, prop::bool::weighted(0.2))
            .prop_map(|(records, new_epoch)| Step::LeaderAppend { records, new_epoch }),
        3 => (1usize..5, 0i64..3, prop::bool::weighted(0.2))
            .prop_map(|(records, gap, new_epoch)| Step::FollowerAppend { records, gap, new_epoch }),
        1 => (0.0f64..1.0).prop_map(Step::Truncate),
        3 => (-0.3f64..1.3).prop_map(Step::UpdateHighWatermark),
        1 => (0.0f64..=1.0).prop_map(Step::DeleteRecords),
        1 => any::<bool>().prop_map(|clean| Step::Reopen { clean }),
    ]
}

/// `start + fraction * (end - start)`, rounded down.
fn at_fraction(start: i64, end: i64, fraction: f64) -> i64 {
    start + ((end - start) as f64 * fraction).floor() as i64
}

fn check_invariants(log: &PartitionLog) -> Result<(), TestCaseError> {
    let (start, high_watermark, end) = (
        log.log_start_offset(),
        log.high_watermark(),
        log.log_end_offset(),
    );
    prop_assert!(
        start <= high_watermark,
        "log start {start} > high watermark {high_watermark}"
    );
    prop_assert!(
        high_watermark <= end,
        "high watermark {high_watermark} > log end {end}"
    );
    prop_assert!(
        log.recovery_point() <= end,
        "recovery point {} > log end {end}",
        log.recovery_point()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5715_0007),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// (a) Replaying a leader's appends on a follower reproduces every file of its directory:
    /// segments, indexes, producer snapshots, recovery point and leader-epoch checkpoints.
    #[test]
    fn a_follower_reproduces_the_leaders_files(
        appends in proptest::collection::vec(leader_append(), 1..25),
        segment_bytes in 2000u64..5000,
        index_interval in 0usize..400,
        log_append_time in any::<bool>(),
    ) {
        let leader_dir = tempfile::tempdir().unwrap();
        let follower_dir = tempfile::tempdir().unwrap();
        let config = config(segment_bytes, index_interval, log_append_time);
        let (leader, stored) = build_leader(leader_dir.path(), &config, &appends);
        let mut follower = PartitionLog::open(follower_dir.path(), config).unwrap();
        for batches in &stored {
            follower.append_as_follower(batches).unwrap();
        }
        prop_assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        prop_assert_eq!(follower.leader_epochs(), leader.leader_epochs());
        prop_assert_eq!(follower.producer_epoch(PRODUCER_ID), leader.producer_epoch(PRODUCER_ID));
        prop_assert_eq!(files(follower_dir.path(), &[]), files(leader_dir.path(), &[]));
        // And again after both are closed (final time index entries, snapshots, checkpoints).
        leader.close().unwrap();
        follower.close().unwrap();
        prop_assert_eq!(files(follower_dir.path(), &[]), files(leader_dir.path(), &[]));
    }

    /// (b) A follower truncated anywhere that appends the same batches again ends with the files
    /// of a follower that appended them once (but the log start checkpoint a truncation to the
    /// start writes).
    #[test]
    fn truncating_and_appending_again_gives_the_fresh_log(
        appends in proptest::collection::vec(leader_append(), 1..25),
        segment_bytes in 2000u64..5000,
        index_interval in 0usize..400,
        cut in 0.0f64..1.0,
        reopen in any::<bool>(),
    ) {
        let leader_dir = tempfile::tempdir().unwrap();
        let config = config(segment_bytes, index_interval, false);
        let (leader, stored) = build_leader(leader_dir.path(), &config, &appends);
        let fresh_dir = tempfile::tempdir().unwrap();
        let mut fresh = PartitionLog::open(fresh_dir.path(), config.clone()).unwrap();
        let replayed_dir = tempfile::tempdir().unwrap();
        let mut replayed = PartitionLog::open(replayed_dir.path(), config.clone()).unwrap();
        for batches in &stored {
            fresh.append_as_follower(batches).unwrap();
            replayed.append_as_follower(batches).unwrap();
        }
        replayed.truncate_to(at_fraction(0, replayed.log_end_offset(), cut)).unwrap();
        if reopen {
            drop(replayed);
            replayed = PartitionLog::open(replayed_dir.path(), config).unwrap();
        }
        for batches in &stored {
            let (first, _) = strom_protocol::records::split_batches(batches).unwrap().remove(0);
            let (last, _) = strom_protocol::records::split_batches(batches).unwrap().pop().unwrap();
            let end = replayed.log_end_offset();
            if last.last_offset() < end {
                continue;
            }
            if first.base_offset >= end {
                replayed.append_as_follower(batches).unwrap();
            } else {
                // The truncation cut inside this append: fetch the rest, as a follower would.
                let rest = leader.read(end, 1 << 24, last.last_offset() + 1, true).unwrap();
                replayed.append_as_follower(&rest).unwrap();
            }
        }
        prop_assert_eq!(replayed.log_end_offset(), fresh.log_end_offset());
        prop_assert_eq!(replayed.leader_epochs(), fresh.leader_epochs());
        let skip = [LOG_START_CHECKPOINT];
        prop_assert_eq!(files(replayed_dir.path(), &skip), files(fresh_dir.path(), &skip));
    }

    /// (c) The offsets' invariants hold under any sequence of operations, and the high watermark
    /// is exactly what its owner set (clamped), kept by appends and clean reopens.
    #[test]
    fn the_high_watermark_never_passes_the_log_end(
        steps in proptest::collection::vec(step(), 1..40),
        segment_bytes in 400u64..2000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = config(segment_bytes, 128, false);
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let (mut epoch, mut clock) = (0i32, NOW);
        for step in &steps {
            let before = log.high_watermark();
            match *step {
                Step::LeaderAppend { records, new_epoch } => {
                    epoch += i32::from(new_epoch);
                    let mut builder = BatchBuilder::new(0, Compression::None, clock);
                    for i in 0..records {
                        builder.push(clock, None, Some(Bytes::from(vec![b'v'; i * 20])), Vec::new());
                    }
                    clock += 1;
                    log.append(&builder.build(), epoch, NOW).unwrap();
                    prop_assert_eq!(log.high_watermark(), before);
                }
                Step::FollowerAppend { records, gap, new_epoch } => {
                    epoch += i32::from(new_epoch);
                    let base = log.log_end_offset() + gap;
                    let mut builder = BatchBuilder::new(base, Compression::None, clock)
                        .partition_leader_epoch(epoch);
                    for i in 0..records {
                        builder.push(clock, None, Some(Bytes::from(vec![b'f'; i * 20])), Vec::new());
                    }
                    clock += 1;
                    log.append_as_follower(&builder.build()).unwrap();
                    prop_assert_eq!(log.high_watermark(), before);
                    prop_assert_eq!(log.latest_epoch(), Some(epoch));
                }
                Step::Truncate(fraction) => {
                    let offset = at_fraction(log.log_start_offset(), log.log_end_offset(), fraction);
                    log.truncate_to(offset).unwrap();
                    prop_assert!(log.log_end_offset() <= offset.max(log.log_start_offset()));
                    prop_assert_eq!(
                        log.high_watermark(),
                        before.clamp(log.log_start_offset(), log.log_end_offset())
                    );
                }
                Step::UpdateHighWatermark(fraction) => {
                    let wanted = at_fraction(0, log.log_end_offset(), fraction);
                    let set = log.update_high_watermark(wanted);
                    prop_assert_eq!(set, wanted.clamp(log.log_start_offset(), log.log_end_offset()));
                    prop_assert_eq!(log.high_watermark(), set);
                }
                Step::DeleteRecords(fraction) => {
                    let offset = at_fraction(log.log_start_offset(), before, fraction);
                    prop_assert_eq!(log.delete_records_before(offset).unwrap(), offset);
                    prop_assert!(log.delete_records_before(before + 1).is_err());
                }
                Step::Reopen { clean } => {
                    if clean {
                        log.close().unwrap();
                    } else {
                        drop(log);
                    }
                    log = PartitionLog::open(dir.path(), config.clone()).unwrap();
                    if clean {
                        prop_assert_eq!(log.high_watermark(), before);
                    }
                    epoch = epoch.max(log.latest_epoch().unwrap_or(0));
                }
            }
            check_invariants(&log)?;
        }
    }
}
