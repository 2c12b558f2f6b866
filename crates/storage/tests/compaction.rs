//! Integration tests of log compaction: latest value per key with original offsets, tombstones and
//! `delete.retention.ms`, the active segment left alone, appends concurrent with a pass, recovery
//! from an interrupted swap, codecs, producer state and keyless records.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::CommittedAppend;
use kafka_protocol::records as oracle;
use strom_protocol::records::{
    decode_records, split_batches, BatchBuilder, BatchHeader, Compression,
};
use strom_protocol::ErrorCode;
use strom_storage::{compact_now, LogConfig, PartitionLog, StorageError};

const NOW: i64 = 1_700_000_000_000;
/// A wall-clock time at which any active segment is older than `segment.ms`: forces a roll.
const FAR_FUTURE: i64 = 4_000_000_000_000;

/// (offset, key, value) of one record read back.
type Entry = (i64, Option<String>, Option<String>);

fn compacted(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 128,
        cleanup_policy_compact: true,
        cleanup_policy_delete: false,
        min_cleanable_dirty_ratio: 0.0,
        ..LogConfig::default()
    }
}

/// A batch of keyed records (`None` value = tombstone), timestamps `timestamp + i`.
fn keyed_with(
    codec: Compression,
    timestamp: i64,
    records: &[(&str, Option<&str>)],
    producer: Option<(i64, i16, i32)>,
) -> Bytes {
    let mut builder = BatchBuilder::new(0, codec, timestamp);
    if let Some((id, epoch, sequence)) = producer {
        builder = builder.producer(id, epoch, sequence);
    }
    for (i, (key, value)) in records.iter().enumerate() {
        builder.push(
            timestamp + i as i64,
            Some(Bytes::copy_from_slice(key.as_bytes())),
            value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            Vec::new(),
        );
    }
    builder.build()
}

fn keyed(records: &[(&str, Option<&str>)]) -> Bytes {
    keyed_with(Compression::None, NOW, records, None)
}

/// Every batch of the log from its start, with its decoded records.
fn read_batches(log: &PartitionLog) -> Vec<(BatchHeader, Vec<Entry>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
        assert!(!data.is_empty(), "empty read at {offset}");
        for (header, batch) in split_batches(&data).unwrap() {
            if header.last_offset() < offset {
                continue;
            }
            let records = decode_records(&batch, 1 << 24)
                .unwrap()
                .into_iter()
                .map(|record| {
                    let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                    (record.offset(&header), text(record.key), text(record.value))
                })
                .collect();
            offset = header.last_offset() + 1;
            out.push((header, records));
        }
    }
    out
}

fn read_entries(log: &PartitionLog) -> Vec<Entry> {
    read_batches(log)
        .into_iter()
        .flat_map(|(_, records)| records)
        .collect()
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    paths.sort();
    paths
}

/// Base offset of the active (last) segment.
fn active_base(dir: &Path) -> i64 {
    let last = files(dir, ".log").pop().unwrap();
    let name = last.file_name().unwrap().to_string_lossy().into_owned();
    name.trim_end_matches(".log").parse().unwrap()
}

/// What compaction must leave: below `cleanable_end` the last record of each key (latest among
/// records below `cleanable_end`), everything from `cleanable_end` on.
fn expected_after_compaction(written: &[Entry], cleanable_end: i64) -> Vec<Entry> {
    let mut latest: HashMap<&Option<String>, i64> = HashMap::new();
    for (offset, key, _) in written.iter().filter(|(o, _, _)| *o < cleanable_end) {
        latest.insert(key, *offset);
    }
    written
        .iter()
        .filter(|(offset, key, _)| *offset >= cleanable_end || latest[key] == *offset)
        .cloned()
        .collect()
}

fn lock(log: PartitionLog) -> Mutex<PartitionLog> {
    Mutex::new(log)
}

#[test]
fn keeps_the_latest_value_per_key_at_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = lock(PartitionLog::open(dir.path(), compacted(300)).unwrap());
    let mut written = Vec::new();
    for i in 0..60 {
        let key = format!("k{}", i % 5);
        let value = format!("v{i}");
        let outcome = log
            .lock()
            .unwrap()
            .append_committed(&keyed(&[(&key, Some(&value))]), 0, NOW)
            .unwrap();
        written.push((outcome.base_offset, Some(key), Some(value)));
    }
    let active = active_base(dir.path());
    assert!(active > 10, "the log has sealed segments");
    let active_file = files(dir.path(), ".log").pop().unwrap();
    let active_bytes = fs::read(&active_file).unwrap();
    let end_before = log.lock().unwrap().log_end_offset();

    let stats = compact_now(&log, NOW).unwrap().expect("a pass was due");
    let expected = expected_after_compaction(&written, active);
    assert_eq!(
        stats.records_removed as usize,
        written.len() - expected.len()
    );
    assert!(stats.segments_deleted > 0, "{stats:?}");
    assert_eq!(stats.first_dirty_offset, active);
    {
        let log = log.lock().unwrap();
        assert_eq!(read_entries(&log), expected);
        assert_eq!(log.log_start_offset(), 0);
        assert_eq!(log.log_end_offset(), end_before);
        // Reads from an offset that was compacted away go on at the next surviving record (the
        // segment holding the log start keeps an emptied batch: offset 3, no records).
        let data = log.read(1, 1 << 20, i64::MAX, true).unwrap();
        let batches = split_batches(&data).unwrap();
        assert_eq!(
            (batches[0].0.base_offset, batches[0].0.record_count),
            (3, 0)
        );
        let data = log.read(4, 1 << 20, i64::MAX, true).unwrap();
        let (header, batch) = split_batches(&data).unwrap().remove(0);
        let first_record = decode_records(&batch, 1 << 20).unwrap()[0].offset(&header);
        assert_eq!(
            Some(first_record),
            expected.iter().map(|e| e.0).find(|&o| o >= 4)
        );
    }
    assert_eq!(
        fs::read(&active_file).unwrap(),
        active_bytes,
        "active segment untouched"
    );
    assert!(
        compact_now(&log, NOW).unwrap().is_none(),
        "nothing dirty left"
    );

    // Newer values in later segments supersede the cleaned ones.
    for i in 60..80 {
        let key = format!("k{}", i % 5);
        let value = format!("v{i}");
        let outcome = log
            .lock()
            .unwrap()
            .append_committed(&keyed(&[(&key, Some(&value))]), 0, NOW)
            .unwrap();
        written.push((outcome.base_offset, Some(key), Some(value)));
    }
    compact_now(&log, NOW).unwrap().expect("new dirty segments");
    let expected = expected_after_compaction(&written, active_base(dir.path()));
    assert_eq!(read_entries(&log.lock().unwrap()), expected);

    // Everything survives a reopen, indexes included.
    log.into_inner().unwrap().close().unwrap();
    let mut log = PartitionLog::open(dir.path(), compacted(300)).unwrap();
    assert_eq!(read_entries(&log), expected);
    // Compaction never moves the log start offset, not even through retention's housekeeping.
    log.apply_retention(NOW).unwrap();
    assert_eq!(log.log_start_offset(), 0);
    let (last_offset, _, _) = expected.last().unwrap();
    assert_eq!(log.log_end_offset(), last_offset + 1);
    assert!(log.offset_for_timestamp(NOW).unwrap().is_some());
}

#[test]
fn batches_keep_their_offsets_with_gaps_inside() {
    let dir = tempfile::tempdir().unwrap();
    let log = lock(PartitionLog::open(dir.path(), compacted(1 << 20)).unwrap());
    {
        let mut log = log.lock().unwrap();
        log.append_committed(
            &keyed(&[
                ("a", Some("1")),
                ("b", Some("1")),
                ("c", Some("1")),
                ("d", Some("1")),
            ]),
            3,
            NOW,
        )
        .unwrap();
        log.append_committed(&keyed(&[("a", Some("2")), ("d", Some("2"))]), 3, NOW)
            .unwrap();
        log.maybe_roll_and_flush(FAR_FUTURE).unwrap();
        log.append_committed(&keyed(&[("a", Some("3"))]), 3, NOW)
            .unwrap();
    }
    compact_now(&log, NOW).unwrap().unwrap();
    let batches = read_batches(&log.lock().unwrap());
    let (first, records) = &batches[0];
    assert_eq!((first.base_offset, first.last_offset_delta), (0, 3));
    assert_eq!(first.record_count, 2);
    assert_eq!(first.partition_leader_epoch, 3);
    let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
    assert_eq!(offsets, vec![1, 2]);
    // Timestamps survive the rewrite.
    let data = log
        .lock()
        .unwrap()
        .read(0, 1 << 20, i64::MAX, true)
        .unwrap();
    let batch = split_batches(&data).unwrap().remove(0).1;
    let timestamps: Vec<i64> = decode_records(&batch, 1 << 20)
        .unwrap()
        .iter()
        .map(|record| record.timestamp(first))
        .collect();
    assert_eq!(timestamps, vec![NOW + 1, NOW + 2]);
    assert_eq!(first.max_timestamp, NOW + 2);
    let offsets: Vec<i64> = batches
        .iter()
        .flat_map(|(_, r)| r.iter().map(|e| e.0))
        .collect();
    assert_eq!(offsets, vec![1, 2, 4, 5, 6]);
}

#[test]
fn tombstones_live_for_delete_retention_then_disappear() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        delete_retention_ms: 1_000,
        ..compacted(1 << 20)
    };
    let log = lock(PartitionLog::open(dir.path(), config.clone()).unwrap());
    {
        let mut log = log.lock().unwrap();
        log.append_committed(&keyed(&[("a", Some("1")), ("b", Some("1"))]), 0, NOW)
            .unwrap();
        log.append_committed(&keyed(&[("a", None)]), 0, NOW)
            .unwrap();
        log.maybe_roll_and_flush(FAR_FUTURE).unwrap();
        log.append_committed(&keyed(&[("c", Some("1"))]), 0, NOW)
            .unwrap();
    }
    compact_now(&log, NOW).unwrap().unwrap();
    let entries = read_entries(&log.lock().unwrap());
    assert_eq!(
        entries,
        vec![
            (1, Some("b".into()), Some("1".into())),
            (2, Some("a".into()), None),
            (3, Some("c".into()), Some("1".into())),
        ]
    );
    assert_eq!(
        log.lock()
            .unwrap()
            .cleaner_checkpoint()
            .earliest_delete_horizon,
        Some(NOW + 1_000)
    );
    assert!(compact_now(&log, NOW + 999).unwrap().is_none());
    assert_eq!(read_entries(&log.lock().unwrap()).len(), 3);

    // The horizon survives a restart.
    log.into_inner().unwrap().close().unwrap();
    let log = lock(PartitionLog::open(dir.path(), config).unwrap());
    let stats = compact_now(&log, NOW + 1_000).unwrap().unwrap();
    assert_eq!(stats.tombstones_removed, 1);
    let entries = read_entries(&log.lock().unwrap());
    assert_eq!(
        entries,
        vec![
            (1, Some("b".into()), Some("1".into())),
            (3, Some("c".into()), Some("1".into())),
        ]
    );
    assert_eq!(
        log.lock()
            .unwrap()
            .cleaner_checkpoint()
            .earliest_delete_horizon,
        None
    );
}

#[test]
fn appends_concurrent_with_compaction_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(lock(
        PartitionLog::open(dir.path(), compacted(2_000)).unwrap(),
    ));
    let passes = Arc::new(AtomicUsize::new(0));
    let writer = {
        let log = Arc::clone(&log);
        let passes = Arc::clone(&passes);
        thread::spawn(move || {
            let mut last_write = HashMap::new();
            for i in 0..3_000 {
                if i == 1_500 {
                    // Make sure passes overlap the appends, however the threads are scheduled.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while passes.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
                        thread::yield_now();
                    }
                }
                let key = format!("key-{}", i % 40);
                let value = format!("value-{i}");
                let batch = keyed(&[(&key, Some(&value))]);
                let offset = log
                    .lock()
                    .unwrap()
                    .append_committed(&batch, 0, NOW)
                    .unwrap()
                    .base_offset;
                last_write.insert(key, (offset, value));
            }
            last_write
        })
    };
    while !writer.is_finished() {
        if compact_now(&log, NOW).unwrap().is_some() {
            passes.fetch_add(1, Ordering::SeqCst);
        }
    }
    let last_write = writer.join().unwrap();
    compact_now(&log, NOW).unwrap();
    assert!(
        passes.load(Ordering::SeqCst) > 0,
        "compaction ran while appending"
    );
    let log = log.lock().unwrap();
    let entries = read_entries(&log);
    assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0));
    let mut latest_read = HashMap::new();
    for (offset, key, value) in &entries {
        latest_read.insert(key.clone().unwrap(), (*offset, value.clone().unwrap()));
    }
    assert_eq!(latest_read, last_write);
    assert_eq!(log.log_end_offset(), 3_000);
    // Below the active segment each key appears once.
    let active = active_base(dir.path());
    let mut sealed_keys: Vec<_> = entries
        .iter()
        .filter(|e| e.0 < active)
        .map(|e| &e.1)
        .collect();
    let before = sealed_keys.len();
    sealed_keys.sort();
    sealed_keys.dedup();
    assert_eq!(sealed_keys.len(), before);
}

/// Builds a log with superseded values, closes it, and returns (records written, active base).
fn build_closed_log(dir: &Path) -> Vec<Entry> {
    let mut log = PartitionLog::open(dir, compacted(300)).unwrap();
    let mut written = Vec::new();
    for i in 0..30 {
        let key = format!("k{}", i % 3);
        let value = format!("v{i}");
        let offset = log
            .append_committed(&keyed(&[(&key, Some(&value))]), 0, NOW)
            .unwrap()
            .base_offset;
        written.push((offset, Some(key), Some(value)));
    }
    log.close().unwrap();
    written
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn crash_before_the_swap_commits_keeps_the_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let written = build_closed_log(dir.path());
    let first = files(dir.path(), ".log").remove(0);
    let stem = first.to_string_lossy().trim_end_matches(".log").to_string();
    // A pass died while writing its copy, and another while renaming the indexes to `.swap`.
    fs::write(format!("{stem}.log.cleaned"), b"partial garbage").unwrap();
    fs::write(format!("{stem}.index.cleaned"), b"").unwrap();
    fs::write(format!("{stem}.timeindex.swap"), b"garbage").unwrap();
    let log = PartitionLog::open(dir.path(), compacted(300)).unwrap();
    assert_eq!(read_entries(&log), written);
    assert!(files(dir.path(), ".cleaned").is_empty());
    assert!(files(dir.path(), ".swap").is_empty());
}

/// (base offset, next offset, records) of each segment file in `dir`, read straight from disk.
fn segments_on_disk(dir: &Path) -> Vec<(i64, i64, Vec<Entry>)> {
    files(dir, ".log")
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let base: i64 = name.trim_end_matches(".log").parse().unwrap();
            let data = Bytes::from(fs::read(path).unwrap());
            let mut next = base;
            let mut records = Vec::new();
            for (header, batch) in split_batches(&data).unwrap() {
                next = header.last_offset() + 1;
                for record in decode_records(&batch, 1 << 20).unwrap() {
                    let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                    records.push((record.offset(&header), text(record.key), text(record.value)));
                }
            }
            (base, next, records)
        })
        .collect()
}

#[test]
fn crash_after_the_swap_commits_completes_it() {
    // A log whose segments a first pass halved, then more data: the second pass merges them.
    let original = tempfile::tempdir().unwrap();
    let log = lock(PartitionLog::open(original.path(), compacted(300)).unwrap());
    for i in 0..40 {
        let key = if i % 2 == 0 {
            format!("a{i}")
        } else {
            "b".to_string()
        };
        let batch = keyed(&[(&key, Some("v"))]);
        log.lock()
            .unwrap()
            .append_committed(&batch, 0, NOW)
            .unwrap();
    }
    compact_now(&log, NOW).unwrap().unwrap();
    for i in 0..12 {
        let batch = keyed(&[(&format!("c{i}"), Some("v"))]);
        log.lock()
            .unwrap()
            .append_committed(&batch, 0, NOW)
            .unwrap();
    }
    let log_end = log.lock().unwrap().log_end_offset();
    log.into_inner().unwrap().close().unwrap();

    let cleaned = tempfile::tempdir().unwrap();
    copy_dir(original.path(), cleaned.path());
    let log = lock(PartitionLog::open(cleaned.path(), compacted(300)).unwrap());
    let segments_before = log.lock().unwrap().segment_count();
    let stats = compact_now(&log, NOW).unwrap().unwrap();
    assert!(
        stats.segments_deleted > 0,
        "segments were merged: {stats:?}"
    );
    assert!(log.lock().unwrap().segment_count() < segments_before);
    let expected_if_complete = read_entries(&log.lock().unwrap());
    log.into_inner().unwrap().close().unwrap();

    // The original directory as a crash right after the commit point leaves it: every cleaned
    // log renamed to `.log.swap`, some indexes too, the old segments all still in place.
    let old_segments = segments_on_disk(original.path());
    let new_segments = segments_on_disk(cleaned.path());
    for (i, path) in files(cleaned.path(), ".log").iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let target = original.path().join(&name);
        if target.exists() && fs::read(&target).unwrap() == fs::read(path).unwrap() {
            continue;
        }
        fs::copy(path, original.path().join(format!("{name}.swap"))).unwrap();
        if i % 2 == 0 {
            let stem = name.trim_end_matches(".log");
            let index = cleaned.path().join(format!("{stem}.index"));
            fs::copy(index, original.path().join(format!("{stem}.index.swap"))).unwrap();
        }
    }
    // Recovery: the new segments, the old ones merged into them gone; segments the pass emptied
    // and deletes after the swaps are still there.
    let mut expected: Vec<Entry> = new_segments.iter().flat_map(|s| s.2.clone()).collect();
    for (base, _, records) in &old_segments {
        let replaced_or_merged = new_segments
            .iter()
            .any(|(new_base, next, _)| new_base <= base && base < next.max(&(new_base + 1)));
        if !replaced_or_merged {
            expected.extend(records.iter().cloned());
        }
    }
    expected.sort();
    let merged_away = old_segments.iter().any(|(base, _, _)| {
        new_segments
            .iter()
            .any(|(new_base, next, _)| new_base < base && base < next)
    });
    assert!(merged_away, "the crash leaves merged members behind");
    let log = PartitionLog::open(original.path(), compacted(300)).unwrap();
    assert_eq!(read_entries(&log), expected);
    assert!(files(original.path(), ".swap").is_empty());
    assert_eq!(log.log_end_offset(), log_end);
    // Every key still reads its latest value.
    let latest = |entries: &[Entry]| {
        let mut map = HashMap::new();
        for (offset, key, value) in entries {
            map.insert(key.clone(), (*offset, value.clone()));
        }
        map
    };
    assert_eq!(latest(&expected), latest(&expected_if_complete));
}

#[test]
fn compressed_batches_keep_their_codec() {
    let dir = tempfile::tempdir().unwrap();
    let log = lock(PartitionLog::open(dir.path(), compacted(1 << 20)).unwrap());
    let codecs = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    {
        let mut log = log.lock().unwrap();
        for (i, codec) in codecs.iter().enumerate() {
            let keep = format!("keep-{i}");
            let batch = keyed_with(
                *codec,
                NOW,
                &[
                    ("shared", Some("old")),
                    (&keep, Some("x")),
                    ("shared2", Some("old")),
                ],
                None,
            );
            log.append_committed(&batch, 0, NOW).unwrap();
        }
        log.append_committed(
            &keyed(&[("shared", Some("new")), ("shared2", Some("new"))]),
            0,
            NOW,
        )
        .unwrap();
        log.maybe_roll_and_flush(FAR_FUTURE).unwrap();
        log.append_committed(&keyed(&[("tail", Some("1"))]), 0, NOW)
            .unwrap();
    }
    compact_now(&log, NOW).unwrap().unwrap();
    let batches = read_batches(&log.lock().unwrap());
    for (i, codec) in codecs.iter().enumerate() {
        let (header, records) = &batches[i];
        assert_eq!(header.compression().unwrap(), *codec);
        assert_eq!(header.base_offset, 3 * i as i64);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(
            records,
            &vec![(
                3 * i as i64 + 1,
                Some(format!("keep-{i}")),
                Some("x".into())
            )]
        );
    }
    assert_eq!(batches[4].1.len(), 2);
}

#[test]
fn producer_state_survives_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = lock(PartitionLog::open(dir.path(), compacted(1 << 20)).unwrap());
    let producer_batch = |sequence: i32, key: &str| {
        keyed_with(
            Compression::None,
            NOW,
            &[(key, Some("p"))],
            Some((7, 0, sequence)),
        )
    };
    {
        let mut log = log.lock().unwrap();
        for sequence in 0..3 {
            log.append_committed(&producer_batch(sequence, "x"), 0, NOW)
                .unwrap();
        }
        // Another writer supersedes the producer's last record.
        log.append_committed(&keyed(&[("x", Some("other"))]), 0, NOW)
            .unwrap();
        log.maybe_roll_and_flush(FAR_FUTURE).unwrap();
        log.append_committed(&keyed(&[("tail", Some("1"))]), 0, NOW)
            .unwrap();
    }
    compact_now(&log, NOW).unwrap().unwrap();
    let batches = read_batches(&log.lock().unwrap());
    // Batches 0 and 1 are gone; the producer's newest batch stays, empty.
    assert_eq!(batches[0].0.base_offset, 2);
    assert_eq!(batches[0].0.record_count, 0);
    assert_eq!(batches[0].0.producer_id, 7);
    assert_eq!(batches[0].0.base_sequence, 2);

    // Rebuild producer state from the log alone.
    log.into_inner().unwrap().close().unwrap();
    for snapshot in files(dir.path(), ".snapshot") {
        fs::remove_file(snapshot).unwrap();
    }
    let mut log = PartitionLog::open(dir.path(), compacted(1 << 20)).unwrap();
    let retry = log
        .append_committed(&producer_batch(2, "x"), 0, NOW)
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 2);
    assert!(matches!(
        log.append_committed(&producer_batch(5, "x"), 0, NOW),
        Err(StorageError::OutOfOrderSequence { expected: 3, .. })
    ));
    let next = log
        .append_committed(&producer_batch(3, "x"), 0, NOW)
        .unwrap();
    assert!(!next.duplicate);
}

#[test]
fn records_without_key_are_refused_on_compacted_logs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compacted(1 << 20)).unwrap();
    let mut builder = BatchBuilder::new(0, Compression::Lz4, NOW);
    builder.push(NOW, Some(Bytes::from_static(b"k")), None, Vec::new());
    builder.push(NOW, None, Some(Bytes::from_static(b"v")), Vec::new());
    builder.push(NOW, Some(Bytes::from_static(b"k")), None, Vec::new());
    builder.push(NOW, None, None, Vec::new());
    let error = log.append_committed(&builder.build(), 0, NOW).unwrap_err();
    match &error {
        StorageError::RecordsWithoutKey { batch_indexes } => assert_eq!(batch_indexes, &[1, 3]),
        other => panic!("expected records without key, got {other}"),
    }
    assert_eq!(error.error_code(), ErrorCode::InvalidRecord);
    assert_eq!(log.log_end_offset(), 0);
    log.append_committed(&keyed(&[("k", None)]), 0, NOW)
        .unwrap();

    let plain = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(plain.path(), LogConfig::default()).unwrap();
    log.append_committed(&builder.build(), 0, NOW).unwrap();
}

#[test]
fn compact_and_delete_apply_both() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_policy_delete: true,
        retention_ms: 1_000,
        ..compacted(300)
    };
    let log = lock(PartitionLog::open(dir.path(), config).unwrap());
    {
        let mut log = log.lock().unwrap();
        // Old records with unique keys (compaction keeps them), then fresh ones on two keys.
        for i in 0..10 {
            let key = format!("old-{i}");
            let batch = keyed_with(Compression::None, NOW - 10_000, &[(&key, Some("v"))], None);
            log.append_committed(&batch, 0, NOW).unwrap();
        }
        for i in 0..20 {
            let key = format!("k{}", i % 2);
            log.append_committed(&keyed(&[(&key, Some("v"))]), 0, NOW)
                .unwrap();
        }
    }
    compact_now(&log, NOW).unwrap().unwrap();
    let mut log = log.lock().unwrap();
    let old_keys = |log: &PartitionLog| {
        read_entries(log)
            .iter()
            .filter(|entry| entry.1.as_deref().unwrap().starts_with("old-"))
            .count()
    };
    assert_eq!(old_keys(&log), 10, "compaction keeps unique keys");
    let active = active_base(dir.path());
    let fresh_sealed = read_entries(&log)
        .iter()
        .filter(|entry| entry.0 >= 10 && entry.0 < active)
        .count();
    assert!(fresh_sealed <= 2, "compaction deduplicated the fresh keys");
    assert!(log.apply_retention(NOW).unwrap() > 0);
    assert!(log.log_start_offset() > 0);
    assert!(old_keys(&log) < 10, "retention deleted old segments");
}

#[test]
fn plain_logs_are_never_compacted_and_min_lag_holds_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = lock(
        PartitionLog::open(
            dir.path(),
            LogConfig {
                segment_bytes: 300,
                ..LogConfig::default()
            },
        )
        .unwrap(),
    );
    for _ in 0..10 {
        log.lock()
            .unwrap()
            .append_committed(&keyed(&[("k", Some("v"))]), 0, NOW)
            .unwrap();
    }
    assert!(compact_now(&log, NOW).unwrap().is_none());

    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_compaction_lag_ms: 60_000,
        ..compacted(300)
    };
    let log = lock(PartitionLog::open(dir.path(), config).unwrap());
    for _ in 0..10 {
        log.lock()
            .unwrap()
            .append_committed(&keyed(&[("k", Some("v"))]), 0, NOW)
            .unwrap();
    }
    assert!(compact_now(&log, NOW + 1_000).unwrap().is_none());
    assert!(compact_now(&log, NOW + 61_000).unwrap().is_some());
}

/// Every record of the log as the `kafka-protocol` crate decodes it (what a client sees).
fn oracle_records(log: &PartitionLog) -> Vec<oracle::Record> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
        offset = split_batches(&data)
            .unwrap()
            .last()
            .unwrap()
            .0
            .last_offset()
            + 1;
        for set in oracle::RecordBatchDecoder::decode_all(&mut data.clone()).unwrap() {
            out.extend(set.records);
        }
    }
    out
}

#[test]
fn clients_see_surviving_records_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type_log_append: false,
        ..compacted(1 << 20)
    };
    let log = lock(PartitionLog::open(dir.path(), config).unwrap());
    {
        let mut log = log.lock().unwrap();
        for (i, codec) in [Compression::None, Compression::Zstd, Compression::Gzip]
            .into_iter()
            .enumerate()
        {
            let mut builder =
                BatchBuilder::new(0, codec, NOW + 100 * i as i64).producer(40 + i as i64, 1, 0);
            for j in 0..6 {
                let key = format!("key-{}", (i * 6 + j) % 7);
                let value = (j % 3 != 0).then(|| Bytes::from(format!("value-{i}-{j}")));
                let headers = vec![strom_protocol::records::RecordHeader {
                    key: format!("h{j}"),
                    value: Some(Bytes::from(format!("hv{i}{j}"))),
                }];
                builder.push(
                    NOW + 100 * i as i64 + 7 * j as i64,
                    Some(Bytes::from(key)),
                    value,
                    headers,
                );
            }
            log.append_committed(&builder.build(), 9, NOW).unwrap();
        }
        log.maybe_roll_and_flush(FAR_FUTURE).unwrap();
        log.append_committed(&keyed(&[("tail", Some("1"))]), 9, NOW)
            .unwrap();
    }
    let before = oracle_records(&log.lock().unwrap());
    compact_now(&log, NOW).unwrap().unwrap();
    let after = oracle_records(&log.lock().unwrap());
    let mut latest = HashMap::new();
    for record in &before {
        latest.insert(record.key.clone(), record.offset);
    }
    let survivors: Vec<&oracle::Record> = before
        .iter()
        .filter(|record| latest[&record.key] == record.offset)
        .collect();
    assert_eq!(after.len(), survivors.len());
    assert!(after.iter().any(|record| record.value.is_none()));
    for (cleaned, original) in after.iter().zip(survivors) {
        // Batches holding tombstones carry the delete horizon now; nothing else changed.
        let expected = oracle::Record {
            delete_horizon: cleaned.delete_horizon,
            ..original.clone()
        };
        assert_eq!(cleaned, &expected);
        if cleaned.value.is_none() {
            assert!(cleaned.delete_horizon);
        }
    }
}
