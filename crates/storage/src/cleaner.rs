//! Log compaction (`cleanup.policy=compact`), after Kafka's `LogCleaner`: keeps the latest record
//! per key in the sealed part of a log, removes tombstones once `delete.retention.ms` has passed
//! since the cleaning pass that first saw them, and never moves an offset.
//!
//! # A cleaning pass ([`compact_now`])
//! 1. **Plan, under the partition lock** (brief): pick the cleanable segments (sealed ones wholly
//!    below the high watermark only, never the active segment; none whose newest record is younger
//!    than `min.compaction.lag.ms`),
//!    decide whether a pass is due (dirty bytes / cleanable bytes >= `min.cleanable.dirty.ratio`,
//!    or dirty data older than `max.compaction.lag.ms`, or tombstones whose delete horizon passed)
//!    and duplicate the file handles of those segments.
//! 2. **Clean, without the lock**: build a key -> latest offset map over the dirty segments (from
//!    the cleaner checkpoint's first dirty offset on), then filter every cleanable segment against
//!    it. A segment that changes is written to `<base>.log.cleaned` (with its `.index.cleaned` and
//!    `.timeindex.cleaned`) and fsynced. Appends continue meanwhile: sealed segments never change.
//! 3. **Swap, under the lock** (brief): for each cleaned segment still unchanged in the log,
//!    rename its files `.cleaned` -> `.swap` (the log file last: a `.log.swap` is the commit
//!    point), fsync the directory, rename `.swap` -> final name (replacing the old files), fsync
//!    again. A segment that became empty is deleted instead (the segment holding the log start
//!    offset keeps an emptied copy of its last batch, so the log start offset never moves). The
//!    cleaner checkpoint (`cleaner-offset.checkpoint`) then records the new first dirty offset and
//!    the earliest pending delete horizon.
//!
//! # Records and batches
//! - Retained records keep their offsets: a rewritten batch keeps its base offset and last offset
//!   delta (so producer sequences stay right, as Kafka's `overrideLastOffset`), its codec,
//!   producer id, epoch and base sequence, partition leader epoch, timestamp type and record
//!   timestamps and headers. Offset deltas inside a batch may then have gaps.
//! - Records without a key are dropped (Kafka counts them as invalid);
//!   [`crate::PartitionLog::append`] refuses them on compacted logs.
//! - Tombstones (null value) follow KIP-534: the first pass that keeps a batch holding tombstones
//!   stamps it with a delete horizon (`now + delete.retention.ms`, stored in the base timestamp
//!   with attribute bit `0x40`, record timestamp deltas rebased); a later pass at or after the
//!   horizon drops them.
//! - A batch left with no records is dropped, unless it is its producer's newest batch: that one
//!   stays as an empty batch so the producer's sequence number survives (Kafka does the same).
//! - Control batches (transaction markers) are kept as they are.
//!
//! # Recovery
//! [`crate::PartitionLog::open`] first finishes or discards interrupted swaps: a `<base>.log.swap`
//! means the swap committed, so it is completed (the segment's index files are deleted, to be
//! rebuilt, and the `.swap` log renamed over the old one); every other `.cleaned` or `.swap` file
//! is an unfinished pass and is deleted.
//!
//! # Merging
//! Adjacent segments whose sizes (before cleaning) add up to at most `segment.bytes` are cleaned
//! into one segment named after the first (Kafka's `groupSegmentsBySize`), so segments shrunk by
//! compaction are merged by a later pass. The merged copy always reaches the last offset of its
//! last member (keeping an emptied last batch if need be), and it is swapped in before the other
//! members are deleted: a member left behind by a crash overlaps it and is deleted on open.
//!
//! # Limits
//! The key map holds at most [`MAX_OFFSET_MAP_BYTES`] (keys plus overhead, Kafka's
//! `log.cleaner.dedupe.buffer.size` in spirit): a pass stops its dirty range at the segment that
//! filled it and the next pass continues from there.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use strom_protocol::compression::compress;
use strom_protocol::records::{
    decode_records, peek_batch_len, validate_batch, BatchBuilder, BatchHeader, Compression, Record,
    ATTR_COMPRESSION_MASK, BATCH_HEADER_LEN, DEFAULT_MAX_DECOMPRESSED_BYTES, LOG_OVERHEAD,
};

use crate::error::{IoContext, StorageError, StorageResult};
use crate::log::{parse_offset_name, PartitionLog};
use crate::segment::{
    fsync_dir, segment_file_with, write_file_atomically, PatchedBatch, Segment, CLEANED_SUFFIX,
    INDEX_SUFFIX, LOG_SUFFIX, SWAP_SUFFIX, TIME_INDEX_SUFFIX,
};

/// Name of the file holding the cleaner's progress inside the partition directory.
pub const CLEANER_CHECKPOINT: &str = "cleaner-offset.checkpoint";
const CLEANER_CHECKPOINT_VERSION: &str = "0";
/// Batch attribute bit: the base timestamp holds the delete horizon of the batch's tombstones
/// (Kafka's `DELETE_HORIZON_FLAG_MASK`, KIP-534).
pub const ATTR_DELETE_HORIZON: i16 = 0x40;
/// Memory budget of the key -> offset map of one pass (keys plus per-entry overhead).
pub const MAX_OFFSET_MAP_BYTES: usize = 64 << 20;
/// Estimated bytes per map entry besides the key itself.
const MAP_ENTRY_OVERHEAD: usize = 64;
/// How much of a segment is read at once.
const READ_CHUNK: usize = 1 << 20;
/// How much cleaned data is buffered before it is written.
const WRITE_CHUNK: usize = 1 << 20;

/// What the cleaner knows about a log between passes (persisted in [`CLEANER_CHECKPOINT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerCheckpoint {
    /// Everything below this offset has been cleaned: its keys are unique.
    pub first_dirty_offset: i64,
    /// Earliest delete horizon of a batch still holding tombstones, if any.
    pub earliest_delete_horizon: Option<i64>,
}

/// What a cleaning pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Segments replaced by a cleaned (possibly merged) copy.
    pub segments_rewritten: usize,
    /// Segments removed from the log: emptied, or merged into the copy of the one before.
    pub segments_deleted: usize,
    /// Size of the replaced and deleted segments before the pass.
    pub bytes_before: u64,
    /// Size of their replacements.
    pub bytes_after: u64,
    /// Records removed (superseded values, expired tombstones, records without key).
    pub records_removed: u64,
    /// Of those, tombstones past their delete horizon.
    pub tombstones_removed: u64,
    /// The log's first dirty offset after the pass.
    pub first_dirty_offset: i64,
}

/// Runs one cleaning pass over `log` if one is due at `now_ms`; `Ok(None)` when there was nothing
/// to do (not compacted, not dirty enough, or another pass is running). The lock is held only to
/// plan and to swap the cleaned segments in: appends and reads proceed while segments are cleaned.
/// The broker calls this periodically for every partition whose `cleanup.policy` has `compact`;
/// it does blocking file I/O (reads and rewrites whole segments), so from async code run it on a
/// blocking thread (`tokio::task::spawn_blocking`).
pub fn compact_now(
    log: &Mutex<PartitionLog>,
    now_ms: i64,
) -> StorageResult<Option<CompactionStats>> {
    let lock = || log.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(plan) = lock().plan_compaction(now_ms)? else {
        return Ok(None);
    };
    let bases: Vec<i64> = plan.segments.iter().map(|s| s.base_offset).collect();
    let outcome = clean(plan);
    let mut guard = lock();
    match outcome {
        Ok(result) => guard.install_compaction(result).map(Some),
        Err(error) => {
            guard.abort_compaction(&bases);
            Err(error)
        }
    }
}

/// A sealed segment to clean: a duplicate of its log file handle and what it held when planned.
#[derive(Debug)]
pub(crate) struct PlannedSegment {
    pub base_offset: i64,
    pub size: u64,
    pub next_offset: i64,
    pub log: File,
    /// The segment holding the log start offset: it never becomes empty (an emptied copy of its
    /// last batch stays), so compaction never moves the log start offset.
    pub holds_log_start: bool,
}

/// Everything a pass needs, taken under the lock.
#[derive(Debug)]
pub(crate) struct CompactionPlan {
    pub dir: PathBuf,
    /// The cleanable segments, in log order.
    pub segments: Vec<PlannedSegment>,
    pub first_dirty_offset: i64,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    pub index_interval: usize,
    /// `segment.bytes`: adjacent segments are merged while their total stays within it.
    pub max_segment_bytes: u64,
    /// Producer id -> last offset of its newest batch.
    pub producer_last_offsets: HashMap<i64, i64>,
    /// The log's truncation counter when planned; a truncation meanwhile voids the pass.
    pub truncations: u64,
    pub previous_delete_horizon: Option<i64>,
}

/// A cleaned copy of one segment or of several adjacent ones merged, still under its `.cleaned`
/// names (those of the first segment).
#[derive(Debug)]
pub(crate) struct CleanedSegment {
    /// (base offset, size when planned) of the segments it replaces, in order: the swap checks
    /// they are all still in the log, unchanged.
    pub members: Vec<(i64, u64)>,
    pub replacement: Segment,
    pub records_removed: u64,
    pub tombstones_removed: u64,
}

/// The output of the unlocked part of a pass.
#[derive(Debug)]
pub(crate) struct CleanedLog {
    pub cleaned: Vec<CleanedSegment>,
    /// The first dirty offset once these segments are in.
    pub end_offset: i64,
    pub earliest_delete_horizon: Option<i64>,
    pub truncations: u64,
}

/// The unlocked part of a pass: builds the key map and writes cleaned copies of the segments that
/// change.
fn clean(plan: CompactionPlan) -> StorageResult<CleanedLog> {
    let (offset_map, cleaned_count) = build_offset_map(&plan)?;
    let to_clean = &plan.segments[..cleaned_count];
    let mut end_offset = plan.first_dirty_offset;
    if let Some(last) = to_clean.last() {
        end_offset = end_offset.max(last.next_offset);
    }
    let mut earliest_delete_horizon = if cleaned_count < plan.segments.len() {
        plan.previous_delete_horizon
    } else {
        None
    };
    let mut cleaned = Vec::new();
    for group in group_by_size(to_clean, plan.max_segment_bytes) {
        let outcome = clean_group(&plan, group, &offset_map)?;
        earliest_delete_horizon = min_option(earliest_delete_horizon, outcome.delete_horizon);
        if let Some(replacement) = outcome.replacement {
            cleaned.push(CleanedSegment {
                members: group.iter().map(|s| (s.base_offset, s.size)).collect(),
                replacement,
                records_removed: outcome.records_removed,
                tombstones_removed: outcome.tombstones_removed,
            });
        }
    }
    Ok(CleanedLog {
        cleaned,
        end_offset,
        earliest_delete_horizon,
        truncations: plan.truncations,
    })
}

/// Splits `segments` into runs of adjacent segments whose sizes add up to at most `max_bytes` and
/// whose offsets fit one segment's 32-bit relative offsets; each run is cleaned into one segment
/// (Kafka's `groupSegmentsBySize`). Sizes are those before cleaning, so segments shrunk by one pass
/// are merged by a later one.
fn group_by_size(segments: &[PlannedSegment], max_bytes: u64) -> Vec<&[PlannedSegment]> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let base = segments[start].base_offset;
        let mut bytes = segments[start].size;
        let mut end = start + 1;
        while let Some(next) = segments.get(end) {
            let fits = bytes + next.size <= max_bytes
                && next.next_offset - 1 - base <= i64::from(i32::MAX);
            if !fits {
                break;
            }
            bytes += next.size;
            end += 1;
        }
        groups.push(&segments[start..end]);
        start = end;
    }
    groups
}

fn min_option(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Key -> offset of its latest record in the dirty segments. Returns the map and how many of the
/// plan's segments this pass cleans (all of them unless the map filled up).
fn build_offset_map(plan: &CompactionPlan) -> StorageResult<(HashMap<Bytes, i64>, usize)> {
    let mut map: HashMap<Bytes, i64> = HashMap::new();
    let mut map_bytes = 0usize;
    for (index, segment) in plan.segments.iter().enumerate() {
        if segment.next_offset <= plan.first_dirty_offset {
            continue;
        }
        let mut reader = BatchReader::new(segment);
        while let Some((header, batch)) = reader.next_batch()? {
            if header.is_control() || header.last_offset() < plan.first_dirty_offset {
                continue;
            }
            for record in decode(&header, &batch)? {
                let offset = record.offset(&header);
                let Some(key) = record.key else { continue };
                if offset < plan.first_dirty_offset {
                    continue;
                }
                let key = Bytes::copy_from_slice(&key);
                let key_len = key.len();
                if map.insert(key, offset).is_none() {
                    map_bytes += key_len + MAP_ENTRY_OVERHEAD;
                }
            }
        }
        if map_bytes >= MAX_OFFSET_MAP_BYTES {
            return Ok((map, index + 1));
        }
    }
    Ok((map, plan.segments.len()))
}

fn decode(header: &BatchHeader, batch: &Bytes) -> StorageResult<Vec<Record>> {
    decode_records(batch, DEFAULT_MAX_DECOMPRESSED_BYTES).map_err(|error| {
        StorageError::CorruptRecords(format!(
            "batch at offset {} cannot be decoded for compaction: {error}",
            header.base_offset
        ))
    })
}

/// What cleaning one group of segments produced.
struct SegmentOutcome {
    /// The cleaned copy, if anything changed.
    replacement: Option<Segment>,
    records_removed: u64,
    tombstones_removed: u64,
    /// Earliest delete horizon of a retained batch holding tombstones.
    delete_horizon: Option<i64>,
}

/// What becomes of one batch.
enum BatchFate {
    Keep,
    Drop,
    Rewrite(Vec<u8>),
}

/// Filters a group of adjacent segments into one cleaned segment. A lone segment's copy is only
/// started at its first batch that changes (the batches kept unchanged before it are then copied
/// from the original file), so an unchanged segment is not rewritten; a group of several is
/// always merged.
///
/// The copy ends where the group ended: if its last batches were dropped, an emptied copy of the
/// last one stays. So the merged segment covers the offsets of all its members, and a member left
/// behind by a crash is recognised on open as overlapping it. The segment holding the log start
/// offset likewise never becomes empty.
fn clean_group(
    plan: &CompactionPlan,
    group: &[PlannedSegment],
    offset_map: &HashMap<Bytes, i64>,
) -> StorageResult<SegmentOutcome> {
    let mut outcome = SegmentOutcome {
        replacement: None,
        records_removed: 0,
        tombstones_removed: 0,
        delete_horizon: None,
    };
    let merging = group.len() > 1;
    let mut writer: Option<CleanedWriter> = None;
    let mut last_kept_offset = None;
    let mut last_header = None;
    for segment in group {
        let mut unchanged_prefix = 0u64;
        let mut reader = BatchReader::new(segment);
        while let Some((header, batch)) = reader.next_batch()? {
            let fate = clean_batch(plan, &header, &batch, offset_map, &mut outcome)?;
            last_header = Some(header);
            if !matches!(fate, BatchFate::Drop) {
                last_kept_offset = Some(header.last_offset());
            }
            if writer.is_none() {
                if !merging && matches!(fate, BatchFate::Keep) {
                    unchanged_prefix += batch.len() as u64;
                    continue;
                }
                let mut started = CleanedWriter::new(plan, group[0].base_offset)?;
                started.copy_from(&segment.log, unchanged_prefix)?;
                writer = Some(started);
            }
            if let Some(writer) = writer.as_mut() {
                match fate {
                    BatchFate::Keep => writer.push(&batch)?,
                    BatchFate::Rewrite(data) => writer.push(&data)?,
                    BatchFate::Drop => {}
                }
            }
        }
    }
    if let (Some(mut writer), Some(last)) = (writer, last_header) {
        let must_cover_the_group = match last_kept_offset {
            None => group[0].holds_log_start,
            Some(offset) => merging && offset < last.last_offset(),
        };
        if must_cover_the_group {
            writer.push(&encode_retained_batch(&last, Vec::new(), None)?)?;
        }
        outcome.replacement = Some(writer.finish()?);
    }
    Ok(outcome)
}

/// Decides what happens to one batch, counting removals and tracking delete horizons.
fn clean_batch(
    plan: &CompactionPlan,
    header: &BatchHeader,
    batch: &Bytes,
    offset_map: &HashMap<Bytes, i64>,
    outcome: &mut SegmentOutcome,
) -> StorageResult<BatchFate> {
    if header.is_control() {
        return Ok(BatchFate::Keep);
    }
    let has_horizon = header.attributes & ATTR_DELETE_HORIZON != 0;
    let tombstones_expired = has_horizon && plan.now_ms >= header.base_timestamp;
    let records = decode(header, batch)?;
    let total = records.len();
    let mut retained = Vec::with_capacity(total);
    for record in records {
        let offset = record.offset(header);
        let keep = match &record.key {
            None => false,
            Some(key) => offset_map.get(key).is_none_or(|&latest| latest <= offset),
        };
        if !keep {
            outcome.records_removed += 1;
        } else if record.value.is_none() && tombstones_expired {
            outcome.records_removed += 1;
            outcome.tombstones_removed += 1;
        } else {
            retained.push(record);
        }
    }
    let holds_tombstones = retained.iter().any(|record| record.value.is_none());
    if retained.len() == total && (!holds_tombstones || has_horizon) {
        if holds_tombstones {
            outcome.delete_horizon =
                min_option(outcome.delete_horizon, Some(header.base_timestamp));
        }
        return Ok(BatchFate::Keep);
    }
    if retained.is_empty() {
        let newest_of_its_producer = header.has_producer_id()
            && plan.producer_last_offsets.get(&header.producer_id) == Some(&header.last_offset());
        if !newest_of_its_producer {
            return Ok(BatchFate::Drop);
        }
    }
    let delete_horizon = match (holds_tombstones, has_horizon) {
        (true, true) => Some(header.base_timestamp),
        (true, false) => Some(plan.now_ms.saturating_add(plan.delete_retention_ms)),
        (false, _) => None,
    };
    outcome.delete_horizon = min_option(outcome.delete_horizon, delete_horizon);
    encode_retained_batch(header, retained, delete_horizon).map(BatchFate::Rewrite)
}

/// Encodes the records a batch keeps as a new batch with the original's offsets and attributes.
///
/// Why not [`BatchBuilder`] alone: it derives the last offset delta from the records and cannot
/// set the timestamp type or the delete horizon bit, while a cleaned batch must keep its original
/// last offset delta (producer sequences), its LogAppendTime flag and its leader epoch... So the
/// builder encodes the records section (uncompressed, explicit offset deltas) and the header is
/// written here.
fn encode_retained_batch(
    original: &BatchHeader,
    mut records: Vec<Record>,
    delete_horizon: Option<i64>,
) -> StorageResult<Vec<u8>> {
    let absolute = |record: &Record| original.base_timestamp.wrapping_add(record.timestamp_delta);
    let base_timestamp = match delete_horizon {
        Some(horizon) => horizon,
        None if original.attributes & ATTR_DELETE_HORIZON != 0 => records
            .iter()
            .map(absolute)
            .min()
            .unwrap_or(original.base_timestamp),
        None => original.base_timestamp,
    };
    let max_timestamp = if original.is_log_append_time() || records.is_empty() {
        original.max_timestamp
    } else {
        records
            .iter()
            .map(absolute)
            .max()
            .unwrap_or(original.max_timestamp)
    };
    for record in &mut records {
        record.timestamp_delta = absolute(record).wrapping_sub(base_timestamp);
    }
    let codec = if records.is_empty() {
        Compression::None
    } else {
        original.compression().map_err(|error| {
            StorageError::CorruptRecords(format!(
                "batch at offset {}: {error}",
                original.base_offset
            ))
        })?
    };
    let record_count = records.len() as i32;
    let mut builder = BatchBuilder::new(0, Compression::None, base_timestamp);
    for record in records {
        builder.push_record(record);
    }
    let unframed = builder.try_build().map_err(|error| {
        StorageError::InvalidRecord(format!(
            "cleaned batch at offset {} cannot be built: {error}",
            original.base_offset
        ))
    })?;
    let records_section = &unframed[BATCH_HEADER_LEN..];
    let payload = match codec {
        Compression::None => records_section.to_vec(),
        codec => compress(codec, records_section).map_err(|error| {
            StorageError::InvalidRecord(format!(
                "cleaned batch at offset {} cannot be compressed: {error}",
                original.base_offset
            ))
        })?,
    };
    let codec_bits = if record_count == 0 {
        0
    } else {
        original.attributes & ATTR_COMPRESSION_MASK
    };
    let mut attributes =
        (original.attributes & !(ATTR_COMPRESSION_MASK | ATTR_DELETE_HORIZON)) | codec_bits;
    if delete_horizon.is_some() {
        attributes |= ATTR_DELETE_HORIZON;
    }
    let batch_length = i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + payload.len())
        .map_err(|_| StorageError::InvalidRecord("cleaned batch exceeds 2 GiB".into()))?;
    let mut batch = Vec::with_capacity(BATCH_HEADER_LEN + payload.len());
    batch.extend_from_slice(&original.base_offset.to_be_bytes());
    batch.extend_from_slice(&batch_length.to_be_bytes());
    batch.extend_from_slice(&original.partition_leader_epoch.to_be_bytes());
    batch.push(original.magic as u8);
    batch.extend_from_slice(&0u32.to_be_bytes()); // CRC, filled in below
    batch.extend_from_slice(&attributes.to_be_bytes());
    batch.extend_from_slice(&original.last_offset_delta.to_be_bytes());
    batch.extend_from_slice(&base_timestamp.to_be_bytes());
    batch.extend_from_slice(&max_timestamp.to_be_bytes());
    batch.extend_from_slice(&original.producer_id.to_be_bytes());
    batch.extend_from_slice(&original.producer_epoch.to_be_bytes());
    batch.extend_from_slice(&original.base_sequence.to_be_bytes());
    batch.extend_from_slice(&record_count.to_be_bytes());
    batch.extend_from_slice(&payload);
    // The CRC covers everything from the attributes on.
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(batch)
}

/// Reads the batches of a planned segment in order, validating each (length, magic, CRC).
struct BatchReader<'a> {
    segment: &'a PlannedSegment,
    chunk: Bytes,
    chunk_start: u64,
    position: u64,
}

impl<'a> BatchReader<'a> {
    fn new(segment: &'a PlannedSegment) -> Self {
        Self {
            segment,
            chunk: Bytes::new(),
            chunk_start: 0,
            position: 0,
        }
    }

    fn corrupt(&self, what: &str) -> StorageError {
        StorageError::CorruptRecords(format!(
            "segment {} at position {}: {what}",
            self.segment.base_offset, self.position
        ))
    }

    /// Makes the chunk cover `[position, position + len)`.
    fn ensure(&mut self, len: usize) -> StorageResult<()> {
        let end = self.position + len as u64;
        if self.position >= self.chunk_start && end <= self.chunk_start + self.chunk.len() as u64 {
            return Ok(());
        }
        let want = len.max(READ_CHUNK) as u64;
        let read_len = want.min(self.segment.size - self.position) as usize;
        let mut data = vec![0u8; read_len];
        self.segment
            .log
            .read_exact_at(&mut data, self.position)
            .context(|| format!("reading segment {} to clean it", self.segment.base_offset))?;
        self.chunk = Bytes::from(data);
        self.chunk_start = self.position;
        Ok(())
    }

    fn next_batch(&mut self) -> StorageResult<Option<(BatchHeader, Bytes)>> {
        if self.position >= self.segment.size {
            return Ok(None);
        }
        if self.position + LOG_OVERHEAD as u64 > self.segment.size {
            return Err(self.corrupt("truncated batch"));
        }
        self.ensure(LOG_OVERHEAD)?;
        let at = (self.position - self.chunk_start) as usize;
        let len = peek_batch_len(&self.chunk[at..])
            .filter(|&len| len >= BATCH_HEADER_LEN)
            .ok_or_else(|| self.corrupt("invalid batch length"))?;
        if self.position + len as u64 > self.segment.size {
            return Err(self.corrupt("batch runs past the end of the segment"));
        }
        self.ensure(len)?;
        let at = (self.position - self.chunk_start) as usize;
        let batch = self.chunk.slice(at..at + len);
        let header = validate_batch(&batch).map_err(|error| self.corrupt(&error.to_string()))?;
        self.position += len as u64;
        Ok(Some((header, batch)))
    }
}

/// Writes a cleaned copy of a segment, buffering batches.
struct CleanedWriter {
    segment: Segment,
    buffer: Vec<u8>,
    batch_starts: Vec<usize>,
    index_interval: usize,
}

impl CleanedWriter {
    fn new(plan: &CompactionPlan, base_offset: i64) -> StorageResult<Self> {
        Ok(Self {
            segment: Segment::create_cleaned(&plan.dir, base_offset, plan.now_ms)?,
            buffer: Vec::with_capacity(WRITE_CHUNK),
            batch_starts: Vec::new(),
            index_interval: plan.index_interval,
        })
    }

    /// Copies the first `len` bytes of `source` (whole batches, kept unchanged).
    fn copy_from(&mut self, source: &File, len: u64) -> StorageResult<()> {
        let mut position = 0u64;
        let mut header = [0u8; LOG_OVERHEAD];
        while position < len {
            source
                .read_exact_at(&mut header, position)
                .context(|| "reading a segment to clean it".to_string())?;
            let batch_len = peek_batch_len(&header).unwrap_or(0);
            if batch_len < BATCH_HEADER_LEN || position + batch_len as u64 > len {
                return Err(StorageError::CorruptRecords(format!(
                    "invalid batch length at position {position} while cleaning"
                )));
            }
            let mut batch = vec![0u8; batch_len];
            source
                .read_exact_at(&mut batch, position)
                .context(|| "reading a segment to clean it".to_string())?;
            self.push(&batch)?;
            position += batch_len as u64;
        }
        Ok(())
    }

    fn push(&mut self, batch: &[u8]) -> StorageResult<()> {
        self.batch_starts.push(self.buffer.len());
        self.buffer.extend_from_slice(batch);
        if self.buffer.len() >= WRITE_CHUNK {
            self.write_buffer()?;
        }
        Ok(())
    }

    fn write_buffer(&mut self) -> StorageResult<()> {
        if !self.buffer.is_empty() {
            let data = Bytes::from(std::mem::replace(
                &mut self.buffer,
                Vec::with_capacity(WRITE_CHUNK),
            ));
            let batches = self
                .batch_starts
                .iter()
                .enumerate()
                .map(|(i, &start)| {
                    let end = self.batch_starts.get(i + 1).copied().unwrap_or(data.len());
                    PatchedBatch::unchanged(&data.slice(start..end))
                })
                .collect::<StorageResult<Vec<PatchedBatch>>>()?;
            self.segment.append(&batches, self.index_interval)?;
            self.batch_starts.clear();
        }
        Ok(())
    }

    /// Writes what is buffered and fsyncs the copy's three files.
    fn finish(mut self) -> StorageResult<Segment> {
        self.write_buffer()?;
        self.segment.seal()?;
        Ok(self.segment)
    }
}

/// Deletes the files of segment `base_offset` carrying the extra suffix `extra`, best effort
/// (used to discard a cleaned copy).
pub(crate) fn remove_segment_files(dir: &Path, base_offset: i64, extra: &str) {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = segment_file_with(dir, base_offset, suffix, extra);
        if let Err(error) = fs::remove_file(&path) {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), %error, "could not delete a cleaned file");
            }
        }
    }
}

fn remove_if_present(path: &Path) -> StorageResult<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(StorageError::io(
            format!("deleting {}", path.display()),
            error,
        )),
    }
}

fn file_names(dir: &Path) -> StorageResult<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).context(|| format!("listing {}", dir.display()))? {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Completes swaps that reached their commit point (`<base>.log.swap` exists) and deletes the
/// files of unfinished passes. Runs before a log's segments are opened.
pub(crate) fn recover_interrupted_swaps(dir: &Path) -> StorageResult<()> {
    let log_swap = format!("{LOG_SUFFIX}{SWAP_SUFFIX}");
    let mut changed = false;
    for name in file_names(dir)? {
        let Some(base) = parse_offset_name(&name, &log_swap) else {
            continue;
        };
        // The indexes may be the old ones or half renamed: delete them all, open rebuilds them.
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            for extra in ["", CLEANED_SUFFIX, SWAP_SUFFIX] {
                remove_if_present(&segment_file_with(dir, base, suffix, extra))?;
            }
        }
        fsync_dir(dir)?;
        let from = segment_file_with(dir, base, LOG_SUFFIX, SWAP_SUFFIX);
        let to = segment_file_with(dir, base, LOG_SUFFIX, "");
        fs::rename(&from, &to).context(|| format!("completing the swap of {}", from.display()))?;
        tracing::warn!(segment = %to.display(), "completed an interrupted compaction swap");
        changed = true;
    }
    for name in file_names(dir)? {
        if name.ends_with(CLEANED_SUFFIX) || name.ends_with(SWAP_SUFFIX) {
            changed |= remove_if_present(&dir.join(&name))?;
            tracing::warn!(file = %name, "deleted a file of an interrupted compaction");
        }
    }
    if changed {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Reads the cleaner checkpoint of `dir`; `None` when absent or malformed.
pub(crate) fn read_cleaner_checkpoint(dir: &Path) -> StorageResult<Option<CleanerCheckpoint>> {
    let path = dir.join(CLEANER_CHECKPOINT);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(StorageError::io(
                format!("reading {}", path.display()),
                error,
            ))
        }
    };
    let mut lines = text.lines().map(str::trim);
    let parsed = match (lines.next(), lines.next(), lines.next()) {
        (Some(CLEANER_CHECKPOINT_VERSION), Some(offset), Some(horizon)) => {
            match (offset.parse::<i64>(), horizon) {
                (Ok(offset), "none") => Some((offset, None)),
                (Ok(offset), horizon) => horizon.parse::<i64>().ok().map(|h| (offset, Some(h))),
                _ => None,
            }
        }
        _ => None,
    };
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "ignoring malformed cleaner checkpoint");
    }
    Ok(parsed.map(
        |(first_dirty_offset, earliest_delete_horizon)| CleanerCheckpoint {
            first_dirty_offset,
            earliest_delete_horizon,
        },
    ))
}

/// Persists the cleaner checkpoint of `dir` atomically.
pub(crate) fn write_cleaner_checkpoint(
    dir: &Path,
    checkpoint: &CleanerCheckpoint,
) -> StorageResult<()> {
    let horizon = checkpoint
        .earliest_delete_horizon
        .map_or_else(|| "none".to_string(), |h| h.to_string());
    let text = format!(
        "{CLEANER_CHECKPOINT_VERSION}\n{}\n{horizon}\n",
        checkpoint.first_dirty_offset
    );
    write_file_atomically(&dir.join(CLEANER_CHECKPOINT), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;

    const NOW: i64 = 1_700_000_000_000;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 200,
            cleanup_policy_compact: true,
            cleanup_policy_delete: false,
            min_cleanable_dirty_ratio: 0.0,
            ..LogConfig::default()
        }
    }

    fn record(key: &str, value: &str) -> Bytes {
        let mut builder = BatchBuilder::new(0, Compression::None, NOW);
        builder.push(
            NOW,
            Some(Bytes::copy_from_slice(key.as_bytes())),
            Some(Bytes::copy_from_slice(value.as_bytes())),
            Vec::new(),
        );
        builder.build()
    }

    fn filled_log(dir: &Path) -> PartitionLog {
        let mut log = PartitionLog::open(dir, config()).unwrap();
        for i in 0..20 {
            log.append(&record(&format!("k{}", i % 2), &i.to_string()), 0, NOW)
                .unwrap();
        }
        log.update_high_watermark(log.log_end_offset());
        assert!(log.segment_count() > 3);
        log
    }

    fn leftovers(dir: &Path) -> usize {
        file_names(dir)
            .unwrap()
            .iter()
            .filter(|name| name.ends_with(CLEANED_SUFFIX) || name.ends_with(SWAP_SUFFIX))
            .count()
    }

    #[test]
    fn segments_deleted_during_a_pass_are_not_swapped_in() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled_log(dir.path());
        let plan = log.plan_compaction(NOW).unwrap().unwrap();
        assert!(
            log.plan_compaction(NOW).unwrap().is_none(),
            "one pass at a time"
        );
        let cleaned = clean(plan).unwrap();
        assert!(cleaned.cleaned.len() > 1);
        let end_before = log.log_end_offset();
        // Meanwhile DeleteRecords removes the first two segments.
        let second_base = cleaned.cleaned[1].members[0].0;
        let third_base = cleaned.cleaned[2].members[0].0;
        log.delete_records_before(third_base).unwrap();
        let stats = log.install_compaction(cleaned).unwrap();
        assert!(stats.segments_rewritten + stats.segments_deleted > 0);
        assert!(second_base < log.log_start_offset());
        assert_eq!(leftovers(dir.path()), 0);
        assert_eq!(log.log_end_offset(), end_before);
        assert!(
            log.plan_compaction(NOW).unwrap().is_none(),
            "nothing dirty left"
        );
    }

    #[test]
    fn a_truncation_during_a_pass_voids_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled_log(dir.path());
        let plan = log.plan_compaction(NOW).unwrap().unwrap();
        let cleaned = clean(plan).unwrap();
        log.truncate_to(5).unwrap();
        let stats = log.install_compaction(cleaned).unwrap();
        assert_eq!(stats.segments_rewritten + stats.segments_deleted, 0);
        assert_eq!(leftovers(dir.path()), 0);
        assert_eq!(log.log_end_offset(), 5);
        assert!(log.cleaner_checkpoint().first_dirty_offset <= 5);
        // The next pass sees the truncated log.
        for i in 0..10 {
            log.append(&record("k", &i.to_string()), 0, NOW).unwrap();
        }
        log.update_high_watermark(log.log_end_offset());
        let plan = log.plan_compaction(NOW).unwrap().unwrap();
        let stats = log.install_compaction(clean(plan).unwrap()).unwrap();
        assert!(stats.records_removed > 0);
    }

    #[test]
    fn a_failed_pass_leaves_no_files_and_can_be_retried() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled_log(dir.path());
        let plan = log.plan_compaction(NOW).unwrap().unwrap();
        let bases: Vec<i64> = plan.segments.iter().map(|s| s.base_offset).collect();
        let cleaned = clean(plan).unwrap();
        drop(cleaned.cleaned);
        log.abort_compaction(&bases);
        assert_eq!(leftovers(dir.path()), 0);
        assert!(log.plan_compaction(NOW).unwrap().is_some());
    }

    #[test]
    fn checkpoint_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_cleaner_checkpoint(dir.path()).unwrap(), None);
        for horizon in [None, Some(NOW)] {
            let checkpoint = CleanerCheckpoint {
                first_dirty_offset: 42,
                earliest_delete_horizon: horizon,
            };
            write_cleaner_checkpoint(dir.path(), &checkpoint).unwrap();
            assert_eq!(
                read_cleaner_checkpoint(dir.path()).unwrap(),
                Some(checkpoint)
            );
        }
        fs::write(dir.path().join(CLEANER_CHECKPOINT), "7\nx\n").unwrap();
        assert_eq!(read_cleaner_checkpoint(dir.path()).unwrap(), None);
    }
}
