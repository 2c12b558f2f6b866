//! Property test: any sequence of appends, clean and unclean reopens and config changes keeps every
//! record, at the offsets it was given.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{decode_records, BatchSpec};
use proptest::prelude::*;
use strom_storage::{LogConfig, PartitionLog};

#[derive(Debug, Clone)]
enum Step {
    Append {
        records: usize,
        value_len: usize,
    },
    Reopen {
        clean: bool,
    },
    /// Crash with the last `bytes` of the tail segment lost.
    Tear {
        bytes: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (1usize..8, 0usize..200).prop_map(|(records, value_len)| Step::Append { records, value_len }),
        1 => any::<bool>().prop_map(|clean| Step::Reopen { clean }),
        1 => (1u64..300).prop_map(|bytes| Step::Tear { bytes }),
    ]
}

proptest! {
    // A fixed seed keeps the test deterministic.
    #![proptest_config(ProptestConfig {
        cases: 48,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5715_0001),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn appends_and_reopens_preserve_records(
        steps in proptest::collection::vec(step(), 1..40),
        segment_bytes in 1800u64..5000,
        index_interval in 0usize..600,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes,
            index_interval_bytes: index_interval,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let mut expected: Vec<Vec<u8>> = Vec::new();
        for (n, step) in steps.iter().enumerate() {
            match step {
                Step::Append { records, value_len } => {
                    let mut spec = BatchSpec::new("v", *records, 1000 + n as i64);
                    for (i, value) in spec.values.iter_mut().enumerate() {
                        *value = vec![(n + i) as u8; *value_len];
                    }
                    let outcome = log.append(&spec.build(), 1, 0).unwrap();
                    prop_assert_eq!(outcome.base_offset, expected.len() as i64);
                    expected.extend(spec.values);
                }
                Step::Reopen { clean } => {
                    if *clean {
                        log.close().unwrap();
                    } else {
                        drop(log);
                    }
                    log = PartitionLog::open(dir.path(), config.clone()).unwrap();
                }
                Step::Tear { bytes } => {
                    drop(log);
                    let mut logs: Vec<_> = std::fs::read_dir(dir.path())
                        .unwrap()
                        .map(|entry| entry.unwrap().path())
                        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
                        .collect();
                    logs.sort();
                    let tail = logs.pop().unwrap();
                    let file = std::fs::OpenOptions::new().write(true).open(&tail).unwrap();
                    let len = file.metadata().unwrap().len();
                    file.set_len(len.saturating_sub(*bytes)).unwrap();
                    drop(file);
                    log = PartitionLog::open(dir.path(), config.clone()).unwrap();
                    let kept = log.log_end_offset();
                    prop_assert!(kept <= expected.len() as i64);
                    // Only whole batches of the torn segment can be lost.
                    prop_assert!(len <= *bytes || kept < expected.len() as i64);
                    expected.truncate(kept as usize);
                }
            }
            prop_assert_eq!(log.log_end_offset(), expected.len() as i64);
        }
        // Every offset is readable, starting from any offset.
        for from in [0, expected.len() as i64 / 2] {
            let mut offset = from;
            while offset < log.log_end_offset() {
                let data = log.read(offset, 500, i64::MAX, true).unwrap();
                let records = decode_records(&data);
                prop_assert!(!records.is_empty());
                prop_assert!(records[0].0 <= offset);
                for (record_offset, _, value) in &records {
                    prop_assert_eq!(value, &expected[*record_offset as usize]);
                }
                offset = records.last().unwrap().0 + 1;
            }
        }
    }
}
