//! Property test of compaction against a model: any sequence of keyed appends (tombstones
//! included, several codecs), compaction passes at advancing times, rolls, and clean or unclean
//! reopens keeps every record at its offset, keeps the latest value of every key, leaves keys
//! unique below the cleaner's first dirty offset and never touches the active segment.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use common::CommittedAppend;
use proptest::prelude::*;
use strom_protocol::records::{decode_records, split_batches, BatchBuilder, Compression};
use strom_storage::{compact_now, LogConfig, PartitionLog};

const NOW: i64 = 1_700_000_000_000;
const DELETE_RETENTION_MS: i64 = 50;

#[derive(Debug, Clone)]
enum Step {
    /// One batch: (key, value or tombstone) per record.
    Append {
        records: Vec<(u8, Option<u8>)>,
        codec: u8,
    },
    /// A compaction pass `advance_ms` after the previous step.
    Compact {
        advance_ms: i64,
    },
    Roll,
    Reopen {
        clean: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let record = (0u8..6, proptest::option::weighted(0.8, any::<u8>()));
    prop_oneof![
        6 => (proptest::collection::vec(record, 1..5), 0u8..3)
            .prop_map(|(records, codec)| Step::Append { records, codec }),
        3 => (0i64..80).prop_map(|advance_ms| Step::Compact { advance_ms }),
        1 => Just(Step::Roll),
        1 => any::<bool>().prop_map(|clean| Step::Reopen { clean }),
    ]
}

fn batch(records: &[(u8, Option<u8>)], codec: u8, timestamp: i64) -> Bytes {
    let codec = [Compression::None, Compression::Zstd, Compression::Lz4][usize::from(codec)];
    let mut builder = BatchBuilder::new(0, codec, timestamp);
    for (key, value) in records {
        builder.push(
            timestamp,
            Some(Bytes::from(vec![b'k', *key])),
            value.map(|v| Bytes::from(vec![v])),
            Vec::new(),
        );
    }
    builder.build()
}

/// (offset, key, value) of every record in the log.
type Entry = (i64, Option<Bytes>, Option<Bytes>);

fn read_all(log: &PartitionLog) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
        assert!(!data.is_empty(), "empty read at {offset}");
        for (header, batch) in split_batches(&data).unwrap() {
            for record in decode_records(&batch, 1 << 24).unwrap() {
                out.push((record.offset(&header), record.key, record.value));
            }
            offset = header.last_offset() + 1;
        }
    }
    out
}

fn active_base(dir: &Path) -> i64 {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log")?.parse().ok()
        })
        .max()
        .unwrap()
}

fn check(log: &PartitionLog, dir: &Path, model: &[Entry]) {
    assert_eq!(log.log_end_offset(), model.len() as i64);
    let entries = read_all(log);
    assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0));
    // Every record read is the one appended at its offset.
    for entry in &entries {
        assert_eq!(entry, &model[entry.0 as usize]);
    }
    let present: HashSet<i64> = entries.iter().map(|entry| entry.0).collect();
    // The active segment is whole.
    let active = active_base(dir);
    assert!(model[active as usize..]
        .iter()
        .all(|e| present.contains(&e.0)));
    // The latest record of every key is there, unless it is a tombstone (they expire).
    let mut latest = HashMap::new();
    for entry in model {
        latest.insert(entry.1.clone(), entry);
    }
    for entry in latest.values() {
        assert!(
            entry.2.is_none() || present.contains(&entry.0),
            "{entry:?} lost"
        );
    }
    // Below the first dirty offset, keys are unique.
    let first_dirty = log.cleaner_checkpoint().first_dirty_offset;
    let mut seen = HashSet::new();
    for entry in entries.iter().filter(|entry| entry.0 < first_dirty) {
        assert!(
            seen.insert(entry.1.clone()),
            "duplicate key below {first_dirty}"
        );
    }
}

proptest! {
    // A fixed seed keeps the test deterministic.
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5715_0c0c),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn compaction_keeps_the_model(
        steps in proptest::collection::vec(step(), 1..50),
        segment_bytes in 150u64..600,
        dirty_ratio in prop_oneof![Just(0.0), Just(0.5)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes,
            index_interval_bytes: 100,
            cleanup_policy_compact: true,
            cleanup_policy_delete: false,
            delete_retention_ms: DELETE_RETENTION_MS,
            min_cleanable_dirty_ratio: dirty_ratio,
            ..LogConfig::default()
        };
        let mut log = Mutex::new(PartitionLog::open(dir.path(), config.clone()).unwrap());
        let mut model: Vec<Entry> = Vec::new();
        let mut now = NOW;
        for step in &steps {
            match step {
                Step::Append { records, codec } => {
                    let data = batch(records, *codec, now);
                    let outcome = log.get_mut().unwrap().append_committed(&data, 0, now).unwrap();
                    assert_eq!(outcome.base_offset, model.len() as i64);
                    for (key, value) in records {
                        model.push((
                            model.len() as i64,
                            Some(Bytes::from(vec![b'k', *key])),
                            value.map(|v| Bytes::from(vec![v])),
                        ));
                    }
                }
                Step::Compact { advance_ms } => {
                    now += advance_ms;
                    compact_now(&log, now).unwrap();
                }
                Step::Roll => log.get_mut().unwrap().maybe_roll_and_flush(i64::MAX / 2).unwrap(),
                Step::Reopen { clean } => {
                    let old = log.into_inner().unwrap();
                    if *clean {
                        old.close().unwrap();
                    } else {
                        drop(old);
                    }
                    log = Mutex::new(PartitionLog::open(dir.path(), config.clone()).unwrap());
                }
            }
            check(&log.lock().unwrap(), dir.path(), &model);
        }
    }
}
