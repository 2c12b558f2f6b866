//! A partition log: the ordered segments of one partition directory, with the two ways in, as
//! Kafka's `UnifiedLog` has them: the leader append ([`PartitionLog::append`]: validation,
//! timestamp bounds, idempotent producer checks, offset assignment, header patching) and the
//! follower append ([`PartitionLog::append_as_follower`]: the leader's batches kept byte for byte);
//! the high watermark, the recovery point and the leader-epoch cache ([`crate::leader_epoch`]);
//! reads, ListOffsets lookups, retention, DeleteRecords, truncation, flushing and crash recovery;
//! and the locked steps of a compaction pass (planning and swapping in cleaned segments, see
//! [`crate::cleaner`]).
//!
//! Kafka keeps the high watermark and the recovery point of all partitions of a log directory in
//! two files (`replication-offset-checkpoint`, `recovery-point-offset-checkpoint`); here each
//! partition directory holds its own pair, under the same names, in the format of the log start
//! checkpoint (a version line `0`, then the offset).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use strom_protocol::codec::get_varint;
use strom_protocol::records::{
    decode_records, set_log_append_time, split_batches, BatchHeader, BATCH_HEADER_LEN,
    DEFAULT_MAX_DECOMPRESSED_BYTES,
};

use crate::cleaner::{
    self, CleanedLog, CleanerCheckpoint, CompactionPlan, CompactionStats, PlannedSegment,
};
use crate::config::LogConfig;
use crate::error::{IoContext, StorageError, StorageResult};
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::{ProducerStateManager, SequenceCheck};
use crate::segment::{
    delete_segment_files, fsync_dir, is_uncompressed, segment_file_with, walk_records,
    write_file_atomically, PatchedBatch, Segment, CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX,
    SWAP_SUFFIX, TIME_INDEX_SUFFIX,
};

/// Name of the file holding the log start offset inside the partition directory.
pub const LOG_START_CHECKPOINT: &str = "log-start-offset.checkpoint";
/// Name of the file holding the high watermark inside the partition directory (Kafka's name for
/// its per-log-directory file).
pub const HIGH_WATERMARK_CHECKPOINT: &str = "replication-offset-checkpoint";
/// Name of the file holding the recovery point inside the partition directory (Kafka's name for
/// its per-log-directory file).
pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
const CHECKPOINT_VERSION: &str = "0";
/// How often a moved high watermark is written to its checkpoint by the periodic duty (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms` default).
const HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS: i64 = 5_000;
/// How often a moved recovery point is written to its checkpoint by the periodic duty (Kafka's
/// `log.flush.offset.checkpoint.interval.ms` default).
const RECOVERY_POINT_CHECKPOINT_INTERVAL_MS: i64 = 60_000;
/// Present while the log is cleanly flushed and closed: the next open trusts the tail's indexes
/// instead of re-validating the whole tail segment (Kafka's `.kafka_cleanshutdown`).
pub const CLEAN_SHUTDOWN_MARKER: &str = "clean-shutdown";

/// Result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the first record appended (for a duplicate: where it was first written).
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The broker's append time under LogAppendTime, -1 under CreateTime (and for a follower
    /// append, whose batches carry the leader's times).
    pub log_append_time: i64,
    /// Number of records appended.
    pub record_count: usize,
    /// True when the batch was a retry of one already in the log; nothing was written.
    pub duplicate: bool,
}

/// What the high watermark and recovery point checkpoint files hold, and when they were written.
#[derive(Debug, Clone, Copy)]
struct Checkpointed {
    high_watermark: i64,
    high_watermark_ms: i64,
    recovery_point: i64,
    recovery_point_ms: i64,
}

/// The commit log of one partition. Single writer: mutate through `&mut self`, read through `&self`.
///
/// Invariants: `log start <= high watermark <= log end`, `recovery point <= log end`, offsets
/// increase across appends (checked with `debug_assert!`s after each change).
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// Ordered by base offset; never empty; the last one is the active segment.
    segments: Vec<Segment>,
    log_start_offset: i64,
    /// Offsets below it are committed (replicated to the in-sync replicas; on a single node, simply
    /// appended): what consumers may read. Moved by its owner, never by an append.
    high_watermark: i64,
    /// Offsets below it are known fsynced: recovery validates only segments reaching past it.
    recovery_point: i64,
    /// The leader epochs that wrote to the log and where each started.
    epochs: LeaderEpochCache,
    checkpointed: Checkpointed,
    producers: ProducerStateManager,
    unflushed_messages: i64,
    /// Wall-clock time of the last fsync of the active segment.
    last_flush_ms: i64,
    /// Whether [`CLEAN_SHUTDOWN_MARKER`] exists on disk (removed before the next append).
    clean_marker_present: bool,
    /// The cleaner's progress (compacted logs); persisted after each pass.
    cleaner: CleanerCheckpoint,
    /// A compaction pass has been planned and not yet installed or aborted.
    cleaning_in_progress: bool,
    /// Bumped by every truncation: a compaction pass planned before one is void.
    truncations: u64,
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// The base offset in a segment file name `<20 digits><suffix>`.
pub(crate) fn parse_offset_name(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering from an unclean shutdown: the
    /// segments reaching past the recovery point (at least the last one) are validated batch by
    /// batch and cut at the first torn or corrupt batch; earlier segments are trusted once their
    /// indexes check out. The high watermark is the checkpointed one, clamped to
    /// `[log start, log end]`: its owner moves it on from there.
    pub fn open(dir: &Path, config: LogConfig) -> StorageResult<PartitionLog> {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        cleaner::recover_interrupted_swaps(dir)?;
        let now_ms = wall_clock_ms();
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).context(|| format!("listing {}", dir.display()))? {
            let entry = entry.context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                fs::remove_file(entry.path()).context(|| format!("deleting {name}"))?;
            } else if let Some(base) = parse_offset_name(name, LOG_SUFFIX) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        // Index files without a log file are leftovers of an interrupted deletion.
        for entry in fs::read_dir(dir).context(|| format!("listing {}", dir.display()))? {
            let entry = entry.context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let orphan = [INDEX_SUFFIX, TIME_INDEX_SUFFIX]
                .iter()
                .filter_map(|suffix| parse_offset_name(name, suffix))
                .any(|base| bases.binary_search(&base).is_err());
            if orphan {
                fs::remove_file(entry.path()).context(|| format!("deleting orphan {name}"))?;
            }
        }

        let checkpoint = read_offset_checkpoint(dir, LOG_START_CHECKPOINT)?;
        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let clean_shutdown = marker.exists();
        if clean_shutdown {
            fs::remove_file(&marker).context(|| format!("deleting {}", marker.display()))?;
            fsync_dir(dir)?;
        }
        // Segments wholly below the recovery point were fsynced. Without the checkpoint (a log
        // written before it existed) the guarantee of those days holds: every sealed segment was
        // fsynced when it was rolled.
        let recovery_checkpoint = read_offset_checkpoint(dir, RECOVERY_POINT_CHECKPOINT)?;
        let flushed_up_to = recovery_checkpoint.or(bases.last().copied()).unwrap_or(0);
        let segments =
            Self::open_segments(dir, &bases, &config, flushed_up_to, clean_shutdown, now_ms)?;
        let segments = if segments.is_empty() {
            vec![Segment::create(
                dir,
                checkpoint.unwrap_or(0).max(0),
                now_ms,
            )?]
        } else {
            segments
        };

        let first_base = segments[0].base_offset();
        let log_end = segments.last().map_or(first_base, Segment::next_offset);
        let log_start_offset = checkpoint
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end);
        let high_watermark_checkpoint = read_offset_checkpoint(dir, HIGH_WATERMARK_CHECKPOINT)?;
        let high_watermark = high_watermark_checkpoint
            .unwrap_or(0)
            .clamp(log_start_offset, log_end);
        let recovery_point = if clean_shutdown {
            log_end
        } else {
            flushed_up_to.min(log_end)
        };
        let cleaner = cleaner::read_cleaner_checkpoint(dir)?
            .map(|checkpoint| CleanerCheckpoint {
                first_dirty_offset: checkpoint.first_dirty_offset.min(log_end),
                ..checkpoint
            })
            .unwrap_or(CleanerCheckpoint {
                first_dirty_offset: log_start_offset,
                earliest_delete_horizon: None,
            });
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            high_watermark,
            recovery_point,
            epochs: LeaderEpochCache::default(),
            // What the files hold (-1: no file), so that the periodic duty writes any difference.
            checkpointed: Checkpointed {
                high_watermark: high_watermark_checkpoint.unwrap_or(-1),
                high_watermark_ms: now_ms,
                recovery_point: recovery_checkpoint.unwrap_or(-1),
                recovery_point_ms: now_ms,
            },
            producers: ProducerStateManager::default(),
            unflushed_messages: 0,
            last_flush_ms: now_ms,
            clean_marker_present: false,
            cleaner,
            cleaning_in_progress: false,
            truncations: 0,
        };
        log.load_leader_epochs()?;
        log.rebuild_producer_state()?;
        log.debug_assert_invariants();
        Ok(log)
    }

    /// Opens the segments named by `bases` (sorted). Segments wholly below `flushed_up_to` are
    /// trusted once their indexes check out; later ones (the tail always, unless the log was shut
    /// down cleanly) are validated batch by batch and cut at the first torn or corrupt batch, and
    /// when a sealed one is cut, the segments after it are deleted (their data followed data that
    /// was lost), as Kafka's recovery does.
    fn open_segments(
        dir: &Path,
        bases: &[i64],
        config: &LogConfig,
        flushed_up_to: i64,
        clean_shutdown: bool,
        now_ms: i64,
    ) -> StorageResult<Vec<Segment>> {
        let index_interval = config.index_interval_bytes;
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        for (position, &base) in bases.iter().enumerate() {
            let next_base = bases.get(position + 1).copied();
            let Some(next_base) = next_base else {
                let (segment, truncated) =
                    Segment::open_recovering(dir, base, now_ms, index_interval, clean_shutdown)?;
                if truncated > 0 {
                    tracing::warn!(
                        dir = %dir.display(),
                        bytes_truncated = truncated,
                        "truncated torn or corrupt tail of the log"
                    );
                }
                segments.push(segment);
                break;
            };
            let (segment, truncated) = if clean_shutdown || next_base <= flushed_up_to {
                (Segment::open_sealed(dir, base, now_ms, index_interval)?, 0)
            } else {
                Segment::open_recovering(dir, base, now_ms, index_interval, false)?
            };
            // Only a compaction merge interrupted by a crash leaves a segment starting inside
            // the previous one: a member whose records are all in the merged segment.
            if segments
                .last()
                .is_some_and(|previous| base < previous.next_offset())
            {
                tracing::warn!(dir = %dir.display(), base, "deleting a merged segment");
                segment.delete()?;
                fsync_dir(dir)?;
                continue;
            }
            segments.push(segment);
            if truncated > 0 {
                let dropped = &bases[position + 1..];
                tracing::warn!(
                    dir = %dir.display(),
                    base,
                    bytes_truncated = truncated,
                    segments_deleted = dropped.len(),
                    "truncated a torn or corrupt unflushed segment; deleting the segments after it"
                );
                for &later in dropped {
                    delete_segment_files(dir, later, "")?;
                }
                fsync_dir(dir)?;
                break;
            }
        }
        Ok(segments)
    }

    /// Loads the leader-epoch cache, rebuilding it from the batch headers when its checkpoint is
    /// missing or unreadable, and trims it to the log's offsets (a crash may have lost batches
    /// whose epoch was already recorded: the cache is written before the data).
    fn load_leader_epochs(&mut self) -> StorageResult<()> {
        let (mut epochs, mut changed) = match LeaderEpochCache::load(&self.dir)? {
            Some(epochs) => (epochs, false),
            None => {
                let mut epochs = LeaderEpochCache::default();
                for segment in &self.segments {
                    segment.for_each_header(0, |header| {
                        epochs.assign(header.partition_leader_epoch, header.base_offset);
                    })?;
                }
                // An empty log (a new partition) has nothing to remember yet.
                (epochs, self.size_bytes() > 0)
            }
        };
        changed |= epochs.truncate_from_end(self.log_end_offset());
        changed |= epochs.truncate_from_start(self.log_start_offset);
        self.epochs = epochs;
        if changed {
            self.epochs.write(&self.dir)?;
        }
        Ok(())
    }

    /// Loads the newest producer snapshot at or below the log end and replays batch headers after it.
    fn rebuild_producer_state(&mut self) -> StorageResult<()> {
        let log_end = self.log_end_offset();
        let (mut state, snapshot_offset) = ProducerStateManager::load_latest(&self.dir, log_end)?;
        let replay_from = snapshot_offset.unwrap_or(self.log_start_offset);
        for segment in &self.segments {
            if segment.next_offset() <= replay_from {
                continue;
            }
            let position = match segment.locate(replay_from.max(segment.base_offset()))? {
                Some(batch) => batch.position,
                None => continue,
            };
            segment.for_each_header(position, |header| {
                if header.has_producer_id() && header.base_offset >= replay_from {
                    state.record(header, header.base_offset, header.max_timestamp);
                }
            })?;
        }
        state.evict_before(self.log_start_offset);
        self.producers = state;
        Ok(())
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Offsets below it are committed: consumers read, and ListOffsets answers, below it.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Sets the high watermark to `offset` clamped to `[log start, log end]` (never beyond the
    /// log end offset) and returns it. The owner of the partition moves it: a leader when its
    /// in-sync replicas have the data (on a single node, right after each append), a follower from
    /// its leader's. It reaches its checkpoint file within
    /// `HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS` (see [`PartitionLog::maybe_roll_and_flush`]) and
    /// on [`PartitionLog::flush`].
    pub fn update_high_watermark(&mut self, offset: i64) -> i64 {
        self.high_watermark = offset.clamp(self.log_start_offset, self.log_end_offset());
        self.debug_assert_invariants();
        self.high_watermark
    }

    /// Offsets below it are known to be fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// The newest leader epoch that wrote to the log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// OffsetForLeaderEpoch: (epoch, end offset) for `epoch`, with Kafka's rules (see
    /// [`LeaderEpochCache::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Records that `epoch` leads from the log end on (Kafka's leader does so on becoming leader,
    /// before it appends anything), so that a follower holding batches of an older epoch that
    /// this log lacks learns where they diverge. Checkpointed when the cache changed.
    pub fn assign_leader_epoch(&mut self, epoch: i32) -> StorageResult<()> {
        if self
            .epochs
            .latest_epoch()
            .is_some_and(|latest| latest >= epoch)
        {
            return Ok(());
        }
        if self.epochs.assign(epoch, self.log_end_offset()) {
            self.epochs.write(&self.dir)?;
        }
        Ok(())
    }

    /// The leader-epoch cache.
    pub fn leader_epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// Checks the offsets' invariants (debug builds only).
    fn debug_assert_invariants(&self) {
        let log_end = self.log_end_offset();
        debug_assert!(
            self.log_start_offset <= self.high_watermark,
            "log start {} above the high watermark {}",
            self.log_start_offset,
            self.high_watermark
        );
        debug_assert!(
            self.high_watermark <= log_end,
            "high watermark {} above the log end {log_end}",
            self.high_watermark
        );
        debug_assert!(
            self.recovery_point <= log_end,
            "recovery point {} above the log end {log_end}",
            self.recovery_point
        );
    }

    /// The directory holding this partition's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration; takes effect from the next append / retention / flush check.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Bytes of record batches on disk.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    /// Number of segments (the active one included).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The epoch last seen from an idempotent producer.
    pub fn producer_epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.epoch_of(producer_id)
    }

    /// `segment.bytes`, capped so file positions fit the 32-bit index entries (as Kafka's int).
    fn segment_bytes(&self) -> u64 {
        self.config.segment_bytes.min(i32::MAX as u64)
    }

    fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// The leader append (Kafka's `appendAsLeader`): validates `records` (one or more v2 batches),
    /// checks producer sequences, assigns offsets from the log end, stamps every batch with
    /// `leader_epoch` (recorded in the leader-epoch cache) and writes it. A CreateTime batch whose
    /// header max timestamp differs from its records' (older clients write -1) gets the derived
    /// one, as Kafka sets it. A retried idempotent batch is answered with its original offsets.
    /// The high watermark does not move: the caller advances it once the data is committed.
    pub fn append(
        &mut self,
        records: &Bytes,
        leader_epoch: i32,
        now_ms: i64,
    ) -> StorageResult<AppendOutcome> {
        let batches = split_batches(records)
            .map_err(|error| StorageError::CorruptRecords(error.to_string()))?;
        if batches.is_empty() {
            return Err(StorageError::InvalidRecord(
                "append holds no record batch".into(),
            ));
        }
        if records.len() as u64 > self.segment_bytes() {
            return Err(StorageError::RecordListTooLarge {
                size: records.len(),
                max: self.segment_bytes(),
            });
        }
        let timestamp_bounds = TimestampBounds::of(&self.config);
        let log_append_time = if self.config.timestamp_type_log_append {
            now_ms
        } else {
            -1
        };
        // Each batch's max timestamp as it will be stored.
        let mut max_timestamps = Vec::with_capacity(batches.len());
        for (header, batch) in &batches {
            if batch.len() > self.config.max_message_bytes {
                return Err(StorageError::MessageTooLarge {
                    size: batch.len(),
                    max: self.config.max_message_bytes,
                });
            }
            // In i64: a hostile last offset delta of i32::MAX must not overflow.
            if header.record_count < 1
                || i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1
            {
                return Err(StorageError::InvalidRecord(format!(
                    "batch holds {} records but its last offset delta is {}",
                    header.record_count, header.last_offset_delta
                )));
            }
            if is_uncompressed(header) && !records_fill_batch(header, batch) {
                return Err(StorageError::InvalidRecord(format!(
                    "batch declares {} records but its data does not hold exactly that many",
                    header.record_count
                )));
            }
            if self.config.cleanup_policy_compact && !header.is_control() {
                check_records_have_keys(batch)?;
            }
            let max_timestamp = if log_append_time >= 0 {
                log_append_time
            } else {
                records_max_timestamp(header, batch)?
            };
            if let Some(bounds) = timestamp_bounds {
                let stored = BatchHeader {
                    max_timestamp,
                    ..*header
                };
                bounds.check(&stored, batch, now_ms)?;
            }
            max_timestamps.push(max_timestamp);
        }

        let base_offset = self.log_end_offset();
        // Several idempotent batches in one append must be checked against each other: stage them
        // on a copy of the state. The usual single batch is checked against the state itself.
        let idempotent_batches = batches
            .iter()
            .filter(|(header, _)| header.has_producer_id())
            .count();
        let mut staged = (idempotent_batches > 1).then(|| self.producers.clone());
        let mut accepted = Vec::with_capacity(idempotent_batches);
        let mut next_offset = base_offset;
        let mut record_count = 0usize;
        // Only the first bytes of each batch change (outside the CRC): they are written from a
        // small patched copy, the rest straight from `records`. LogAppendTime, or a max timestamp
        // to correct, rewrites fields under the CRC, so those batches are copied whole.
        let mut patched = Vec::with_capacity(batches.len());
        let mut max_timestamp = i64::MIN;
        for ((header, batch), &stored_timestamp) in batches.iter().zip(&max_timestamps) {
            if header.has_producer_id() {
                match staged.as_ref().unwrap_or(&self.producers).check(header)? {
                    SequenceCheck::Duplicate(original) => {
                        return Ok(AppendOutcome {
                            base_offset: original.base_offset,
                            last_offset: original.last_offset,
                            log_append_time: if self.config.timestamp_type_log_append {
                                original.timestamp
                            } else {
                                -1
                            },
                            record_count: (original.last_offset - original.base_offset + 1)
                                as usize,
                            duplicate: true,
                        });
                    }
                    SequenceCheck::Append => {
                        if let Some(state) = staged.as_mut() {
                            state.record(header, next_offset, stored_timestamp);
                        }
                        accepted.push((*header, next_offset, stored_timestamp));
                    }
                }
            }
            max_timestamp = max_timestamp.max(stored_timestamp);
            patched.push(if log_append_time >= 0 {
                let mut copy = batch.to_vec();
                set_log_append_time(&mut copy, log_append_time);
                PatchedBatch::new(&Bytes::from(copy), next_offset, leader_epoch)?
            } else if stored_timestamp != header.max_timestamp {
                let mut copy = batch.to_vec();
                set_create_time_max_timestamp(&mut copy, stored_timestamp);
                PatchedBatch::new(&Bytes::from(copy), next_offset, leader_epoch)?
            } else {
                PatchedBatch::new(batch, next_offset, leader_epoch)?
            });
            next_offset += i64::from(header.last_offset_delta) + 1;
            record_count += header.record_count as usize;
        }
        let last_offset = next_offset - 1;

        if self.should_roll(records.len() as u64, max_timestamp, last_offset, now_ms) {
            self.roll(now_ms)?;
        }
        self.drop_clean_shutdown_marker()?;
        // The epoch goes to the cache (and its file) before the data, as in Kafka: a crash may
        // leave an epoch without data (trimmed on open), never data without its epoch.
        if self.epochs.assign(leader_epoch, base_offset) {
            self.epochs.write(&self.dir)?;
        }
        let index_interval = self.config.index_interval_bytes;
        self.active_mut().append(&patched, index_interval)?;
        debug_assert_eq!(self.log_end_offset(), last_offset + 1);
        for (header, offset, timestamp) in &accepted {
            self.producers.record(header, *offset, *timestamp);
        }

        self.unflushed_messages = self.unflushed_messages.saturating_add(record_count as i64);
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush_active(now_ms)?;
        }
        self.debug_assert_invariants();
        Ok(AppendOutcome {
            base_offset,
            last_offset,
            log_append_time,
            record_count,
            duplicate: false,
        })
    }

    /// The follower append (Kafka's `appendAsFollower`): writes a leader's batches exactly as they
    /// are (offsets, partition leader epochs, timestamps, bytes). Each batch is checked for length,
    /// magic and CRC-32C; the first must start at or after the log end offset (after it only where
    /// the leader's compaction removed whole batches) and each later one after the previous one.
    /// Indexes, the leader-epoch cache (from each batch's partition leader epoch) and idempotent
    /// producer state (recorded, never refused: the leader already judged it) follow. Record rules
    /// (`max.message.bytes`, keys, timestamps) are the leader's business and not checked. The high
    /// watermark does not move; the caller sets it from the leader's.
    pub fn append_as_follower(&mut self, records: &Bytes) -> StorageResult<AppendOutcome> {
        let batches = split_batches(records)
            .map_err(|error| StorageError::CorruptRecords(error.to_string()))?;
        let (Some((first, _)), Some((last, _))) = (batches.first(), batches.last()) else {
            return Err(StorageError::InvalidRecord(
                "append holds no record batch".into(),
            ));
        };
        if records.len() as u64 > self.segment_bytes() {
            return Err(StorageError::RecordListTooLarge {
                size: records.len(),
                max: self.segment_bytes(),
            });
        }
        let log_end = self.log_end_offset();
        if first.base_offset < log_end {
            return Err(StorageError::UnexpectedAppendOffset {
                first_offset: first.base_offset,
                log_end_offset: log_end,
            });
        }
        for pair in batches.windows(2) {
            let (previous, next) = (&pair[0].0, &pair[1].0);
            if next.base_offset <= previous.last_offset() {
                return Err(StorageError::OffsetsOutOfOrder {
                    previous_last_offset: previous.last_offset(),
                    base_offset: next.base_offset,
                });
            }
        }
        let (base_offset, last_offset) = (first.base_offset, last.last_offset());
        let max_timestamp = batches
            .iter()
            .map(|(header, _)| header.max_timestamp)
            .max()
            .unwrap_or(NO_TIMESTAMP);
        let now_ms = wall_clock_ms();
        if self.should_roll(records.len() as u64, max_timestamp, last_offset, now_ms) {
            self.roll(now_ms)?;
        }
        let relative_last = last_offset - self.active().base_offset();
        if relative_last > i64::from(i32::MAX) {
            return Err(StorageError::InvalidRecord(format!(
                "follower append reaches offset {last_offset}, beyond what the segment at {} can index",
                self.active().base_offset()
            )));
        }
        self.drop_clean_shutdown_marker()?;
        let mut epochs_changed = false;
        for (header, _) in &batches {
            epochs_changed |= self
                .epochs
                .assign(header.partition_leader_epoch, header.base_offset);
        }
        if epochs_changed {
            self.epochs.write(&self.dir)?;
        }
        let stored = batches
            .iter()
            .map(|(_, batch)| PatchedBatch::unchanged(batch))
            .collect::<StorageResult<Vec<_>>>()?;
        let index_interval = self.config.index_interval_bytes;
        self.active_mut().append(&stored, index_interval)?;
        debug_assert_eq!(self.log_end_offset(), last_offset + 1);
        let mut record_count = 0usize;
        for (header, _) in &batches {
            if header.has_producer_id() {
                self.producers
                    .record(header, header.base_offset, header.max_timestamp);
            }
            record_count += usize::try_from(header.record_count).unwrap_or(0);
        }

        self.unflushed_messages = self.unflushed_messages.saturating_add(record_count as i64);
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush_active(now_ms)?;
        }
        self.debug_assert_invariants();
        Ok(AppendOutcome {
            base_offset,
            last_offset,
            log_append_time: -1,
            record_count,
            duplicate: false,
        })
    }

    /// Kafka's roll conditions: the append would overflow `segment.bytes`, the incoming data is
    /// more than `segment.ms` newer than the segment's first batch (or, with no timestamps, the
    /// segment is older than `segment.ms`), or relative offsets would overflow 32 bits.
    fn should_roll(
        &self,
        append_bytes: u64,
        incoming_timestamp: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let waited = match active.first_batch_timestamp() {
            Some(first) if first >= 0 && incoming_timestamp >= 0 => {
                incoming_timestamp.saturating_sub(first)
            }
            _ => now_ms.saturating_sub(active.created_ms()),
        };
        active.size() + append_bytes > self.segment_bytes()
            || waited > self.config.max_segment_ms()
            || last_offset - active.base_offset() > i64::from(i32::MAX)
    }

    /// Seals the active segment (fsyncing it), so the recovery point reaches the log end (and its
    /// checkpoint is written), snapshots producer state and starts a new segment at the log end
    /// offset.
    fn roll(&mut self, now_ms: i64) -> StorageResult<()> {
        let log_end = self.log_end_offset();
        self.active_mut().seal()?;
        self.unflushed_messages = 0;
        self.last_flush_ms = now_ms;
        self.recovery_point = log_end;
        self.checkpoint_recovery_point(now_ms)?;
        self.producers.write_snapshot(&self.dir, log_end)?;
        let segment = Segment::create(&self.dir, log_end, now_ms)?;
        self.segments.push(segment);
        tracing::debug!(dir = %self.dir.display(), base_offset = log_end, "rolled new segment");
        Ok(())
    }

    /// Fsyncs the active segment's log file: everything up to the log end is then flushed.
    fn flush_active(&mut self, now_ms: i64) -> StorageResult<()> {
        self.active_mut().flush_log()?;
        self.unflushed_messages = 0;
        self.last_flush_ms = now_ms;
        self.recovery_point = self.log_end_offset();
        Ok(())
    }

    /// Writes the high watermark to its checkpoint file if it changed since last written.
    fn checkpoint_high_watermark(&mut self, now_ms: i64) -> StorageResult<()> {
        if self.checkpointed.high_watermark != self.high_watermark {
            write_offset_checkpoint(&self.dir, HIGH_WATERMARK_CHECKPOINT, self.high_watermark)?;
            self.checkpointed.high_watermark = self.high_watermark;
        }
        self.checkpointed.high_watermark_ms = now_ms;
        Ok(())
    }

    /// Writes the recovery point to its checkpoint file if it changed since last written.
    fn checkpoint_recovery_point(&mut self, now_ms: i64) -> StorageResult<()> {
        if self.checkpointed.recovery_point != self.recovery_point {
            write_offset_checkpoint(&self.dir, RECOVERY_POINT_CHECKPOINT, self.recovery_point)?;
            self.checkpointed.recovery_point = self.recovery_point;
        }
        self.checkpointed.recovery_point_ms = now_ms;
        Ok(())
    }

    /// Periodic duty: rolls an active segment older than `segment.ms` (wall clock since it was
    /// created; for compacted logs also `max.compaction.lag.ms`), fsyncs when unflushed data is
    /// older than `flush.ms`, and writes a moved high watermark (every
    /// `HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS`) and recovery point (every
    /// `RECOVERY_POINT_CHECKPOINT_INTERVAL_MS`) to their checkpoint files.
    pub fn maybe_roll_and_flush(&mut self, now_ms: i64) -> StorageResult<()> {
        let active = self.active();
        if !active.is_empty()
            && now_ms.saturating_sub(active.created_ms()) > self.config.max_segment_ms()
        {
            self.roll(now_ms)?;
        }
        self.maybe_flush_by_time(now_ms)?;
        if now_ms.saturating_sub(self.checkpointed.high_watermark_ms)
            >= HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS
        {
            self.checkpoint_high_watermark(now_ms)?;
        }
        if now_ms.saturating_sub(self.checkpointed.recovery_point_ms)
            >= RECOVERY_POINT_CHECKPOINT_INTERVAL_MS
        {
            self.checkpoint_recovery_point(now_ms)?;
        }
        Ok(())
    }

    /// The `flush.ms` part of [`PartitionLog::maybe_roll_and_flush`]: fsyncs the active segment
    /// when it holds data older than `flush.ms` that is not yet fsynced.
    pub fn maybe_flush_by_time(&mut self, now_ms: i64) -> StorageResult<()> {
        if self.unflushed_messages > 0
            && now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_ms
        {
            self.flush_active(now_ms)?;
        }
        Ok(())
    }

    /// Fsyncs the active segment (log and indexes), writes a producer state snapshot at the log
    /// end offset, the recovery point (now the log end) and high watermark checkpoints, and marks
    /// the log as cleanly shut down (the mark is dropped by the next append), so that a reopen
    /// needs no tail scan. Meant for shutdown; periodic flushing is
    /// [`PartitionLog::maybe_flush_by_time`].
    pub fn flush(&mut self) -> StorageResult<()> {
        let now_ms = wall_clock_ms();
        self.active_mut().seal()?;
        self.unflushed_messages = 0;
        self.last_flush_ms = now_ms;
        self.recovery_point = self.log_end_offset();
        self.producers
            .write_snapshot(&self.dir, self.log_end_offset())?;
        self.checkpoint_recovery_point(now_ms)?;
        self.checkpoint_high_watermark(now_ms)?;
        if !self.clean_marker_present {
            write_file_atomically(&self.dir.join(CLEAN_SHUTDOWN_MARKER), b"")?;
            self.clean_marker_present = true;
        }
        Ok(())
    }

    /// Removes the clean-shutdown marker before the log changes in a way recovery must check.
    fn drop_clean_shutdown_marker(&mut self) -> StorageResult<()> {
        if self.clean_marker_present {
            let marker = self.dir.join(CLEAN_SHUTDOWN_MARKER);
            fs::remove_file(&marker).context(|| format!("deleting {}", marker.display()))?;
            fsync_dir(&self.dir)?;
            self.clean_marker_present = false;
        }
        Ok(())
    }

    /// Flushes and snapshots; the next open finds a clean log.
    pub fn close(mut self) -> StorageResult<()> {
        self.flush()
    }

    /// Whole batches starting with the one containing `fetch_offset`, up to `max_bytes` (at least
    /// one batch when `min_one_message`), never a batch reaching `max_offset_exclusive`: the high
    /// watermark for consumers, the log end for followers. A fetch offset between the bound and
    /// the log end reads nothing; outside `[log start, log end]` it is `OffsetOutOfRange`.
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one_message: bool,
    ) -> StorageResult<Bytes> {
        let log_end = self.log_end_offset();
        if fetch_offset < self.log_start_offset || fetch_offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset: fetch_offset,
                start: self.log_start_offset,
                end: log_end,
            });
        }
        if fetch_offset >= log_end.min(max_offset_exclusive) {
            return Ok(Bytes::new());
        }
        let first = self.segment_index_for(fetch_offset);
        for segment in &self.segments[first..] {
            let Some(start) = segment.locate(fetch_offset)? else {
                continue;
            };
            let first_len = start.header.total_len();
            if start.header.last_offset() >= max_offset_exclusive
                || (first_len > max_bytes && !min_one_message)
            {
                return Ok(Bytes::new());
            }
            let budget = max_bytes.max(first_len);
            let mut data = segment.read_bytes(start.position, budget)?;
            let mut end = 0usize;
            while end + BATCH_HEADER_LEN <= data.len() {
                let Ok(header) = BatchHeader::parse(&data[end..]) else {
                    break;
                };
                if end + header.total_len() > data.len()
                    || header.last_offset() >= max_offset_exclusive
                {
                    break;
                }
                end += header.total_len();
            }
            data.truncate(end);
            return Ok(Bytes::from(data));
        }
        Ok(Bytes::new())
    }

    /// Index of the segment whose range holds `offset` (the last with base offset <= `offset`).
    fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|segment| segment.base_offset() <= offset)
            .saturating_sub(1)
    }

    /// ListOffsets by timestamp: the first record at or after the log start whose timestamp is at
    /// least `timestamp`, as (offset, timestamp). Compressed batches are decompressed to find the
    /// exact record, as Kafka does.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> StorageResult<Option<(i64, i64)>> {
        for segment in &self.segments {
            if segment.next_offset() <= self.log_start_offset {
                continue;
            }
            if let Some(found) = segment.offset_for_timestamp(timestamp, self.log_start_offset)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: (largest timestamp, offset of the first record carrying it), if
    /// any batch has a timestamp. See [`PartitionLog::try_max_timestamp`]; should reading the
    /// batch fail, answers at batch granularity (that batch's last offset for a compressed batch)
    /// and logs a warning.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        match self.try_max_timestamp() {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "could not resolve the offset of the max timestamp");
                self.segment_with_max_timestamp()
                    .and_then(Segment::max_timestamp)
            }
        }
    }

    /// ListOffsets MAX_TIMESTAMP as Kafka 3.8+ answers it: the largest timestamp in the log and
    /// the offset of the first record carrying it, even inside a compressed batch (that one batch
    /// is decompressed). Under LogAppendTime every record of a batch has the append time, so the
    /// answer is the batch's first record. The earliest segment wins a tie, as in Kafka.
    pub fn try_max_timestamp(&self) -> StorageResult<Option<(i64, i64)>> {
        match self.segment_with_max_timestamp() {
            Some(segment) => segment.resolved_max_timestamp(),
            None => Ok(None),
        }
    }

    /// The first segment holding the log's largest timestamp.
    fn segment_with_max_timestamp(&self) -> Option<&Segment> {
        let mut best: Option<(i64, &Segment)> = None;
        for segment in &self.segments {
            if let Some((timestamp, _)) = segment.max_timestamp() {
                if best.is_none_or(|(best_timestamp, _)| timestamp > best_timestamp) {
                    best = Some((timestamp, segment));
                }
            }
        }
        best.map(|(_, segment)| segment)
    }

    /// DeleteRecords: moves the log start offset up to `offset` (persisted), deleting segments
    /// that lie wholly below it. As in Kafka, `offset` may not pass the high watermark
    /// (`OffsetOutOfRange`, reported with the high watermark as the end). Returns the new log
    /// start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> StorageResult<i64> {
        if offset > self.high_watermark || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end: self.high_watermark,
            });
        }
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.log_start_moved()?;
            self.delete_segments_below_start()?;
        }
        self.debug_assert_invariants();
        Ok(self.log_start_offset)
    }

    /// After the log start offset moved: persists it and forgets the producers and leader epochs
    /// wholly before it.
    fn log_start_moved(&mut self) -> StorageResult<()> {
        self.write_log_start_checkpoint()?;
        self.producers.evict_before(self.log_start_offset);
        if self.epochs.truncate_from_start(self.log_start_offset) {
            self.epochs.write(&self.dir)?;
        }
        Ok(())
    }

    /// How many segments, from the oldest, lie wholly below the high watermark: their successor
    /// (or, for the active segment, the log end) starts at or below it. Only those may be deleted
    /// by retention or cleaned, as in Kafka, so the log start never passes the high watermark and
    /// uncommitted data is never compacted.
    fn segments_below_high_watermark(&self) -> usize {
        let log_end = self.log_end_offset();
        (0..self.segments.len())
            .take_while(|&index| {
                let upper_bound = self
                    .segments
                    .get(index + 1)
                    .map_or(log_end, Segment::base_offset);
                upper_bound <= self.high_watermark
            })
            .count()
    }

    /// Deletes sealed segments whose records are all below the log start offset.
    fn delete_segments_below_start(&mut self) -> StorageResult<usize> {
        let count = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|segment| segment.next_offset() <= self.log_start_offset)
            .count();
        self.delete_oldest_segments(count)?;
        Ok(count)
    }

    fn delete_oldest_segments(&mut self, count: usize) -> StorageResult<()> {
        if count == 0 {
            return Ok(());
        }
        for segment in self.segments.drain(..count) {
            segment.delete()?;
        }
        fsync_dir(&self.dir)
    }

    /// Time and size retention (`cleanup.policy=delete`) plus removal of segments below the log
    /// start offset. Like Kafka, only segments wholly below the high watermark are deleted, and
    /// when every segment including the active one has expired, a new empty active segment is
    /// rolled first so the expired one can go. Returns segments deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> StorageResult<usize> {
        let mut deleted = self.delete_segments_below_start()?;
        if !self.config.cleanup_policy_delete {
            return Ok(deleted);
        }
        let mut expired = 0usize;
        let active_index = self.segments.len() - 1;
        // An empty sealed segment (left by compaction) holds nothing: it goes with its neighbours.
        let empty_sealed =
            |index: usize, segment: &Segment| segment.is_empty() && index < active_index;
        if self.config.retention_ms >= 0 {
            expired = self
                .segments
                .iter()
                .enumerate()
                .take_while(|&(index, segment)| {
                    let newest = segment
                        .max_timestamp()
                        .map_or(segment.created_ms(), |(timestamp, _)| timestamp);
                    empty_sealed(index, segment)
                        || (!segment.is_empty()
                            && now_ms.saturating_sub(newest) > self.config.retention_ms)
                })
                .count();
        }
        if self.config.retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - self.config.retention_bytes;
            let mut by_size = 0usize;
            for (index, segment) in self.segments.iter().enumerate() {
                if (segment.is_empty() && !empty_sealed(index, segment))
                    || excess - (segment.size() as i64) < 0
                {
                    break;
                }
                excess -= segment.size() as i64;
                by_size += 1;
            }
            expired = expired.max(by_size);
        }
        expired = expired.min(self.segments_below_high_watermark());
        if expired == 0 {
            return Ok(deleted);
        }
        if expired == self.segments.len() {
            self.roll(now_ms)?;
        }
        self.delete_oldest_segments(expired)?;
        deleted += expired;
        let first_base = self.segments[0].base_offset();
        if first_base > self.log_start_offset {
            self.log_start_offset = first_base;
            self.log_start_moved()?;
        }
        self.debug_assert_invariants();
        Ok(deleted)
    }

    /// Removes every record at or after `offset` (cutting at the start of the batch holding it).
    /// Truncating at or below the first segment empties the log and restarts it at `offset`.
    /// The high watermark and the recovery point come down to the new log end if above it (and
    /// are checkpointed then), and the leader epochs starting at or after it are forgotten.
    pub fn truncate_to(&mut self, offset: i64) -> StorageResult<()> {
        if offset >= self.log_end_offset() {
            // No record goes, but an epoch that starts at the log end without a batch (a leader
            // that wrote nothing in it) does when truncating exactly there: otherwise a follower
            // would keep naming it as its last fetched epoch, and be told again and again to
            // truncate where it already ends.
            if offset == self.log_end_offset() && self.epochs.truncate_from_end(offset) {
                self.epochs.write(&self.dir)?;
            }
            return Ok(());
        }
        if offset <= self.segments[0].base_offset() {
            return self.truncate_fully_and_start_at(offset.max(0));
        }
        self.drop_clean_shutdown_marker()?;
        self.truncations += 1;
        {
            let keep = self.segment_index_for(offset) + 1;
            for segment in self.segments.drain(keep..) {
                segment.delete()?;
            }
            let index_interval = self.config.index_interval_bytes;
            self.active_mut().truncate_from(offset, index_interval)?;
            fsync_dir(&self.dir)?;
            if self.log_start_offset > self.log_end_offset() {
                self.log_start_offset = self.log_end_offset();
                self.log_start_moved()?;
            }
        }
        self.after_truncation()
    }

    /// Empties the log and restarts it at `offset` (Kafka's `truncateFullyAndStartAt`): what a
    /// follower does when its leader's log starts after this log's end, or when every record it
    /// holds diverges from its leader's. The log start, high watermark and recovery point all
    /// become `offset`.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> StorageResult<()> {
        self.drop_clean_shutdown_marker()?;
        self.truncations += 1;
        let now_ms = wall_clock_ms();
        for segment in self.segments.drain(..) {
            segment.delete()?;
        }
        self.segments
            .push(Segment::create(&self.dir, offset, now_ms)?);
        fsync_dir(&self.dir)?;
        self.log_start_offset = offset;
        self.log_start_moved()?;
        if self.high_watermark != offset {
            self.high_watermark = offset;
            self.checkpoint_high_watermark(now_ms)?;
        }
        if self.recovery_point != offset {
            self.recovery_point = offset;
            self.checkpoint_recovery_point(now_ms)?;
        }
        self.after_truncation()
    }

    /// What every truncation ends with: counters, cleaner state, high watermark and recovery
    /// point brought within the new log end, leader epochs after it forgotten, producer state
    /// rebuilt.
    fn after_truncation(&mut self) -> StorageResult<()> {
        let now_ms = wall_clock_ms();
        self.unflushed_messages = 0;
        let log_end = self.log_end_offset();
        if self.cleaner.first_dirty_offset < self.log_start_offset {
            self.cleaner.first_dirty_offset = self.log_start_offset;
            cleaner::write_cleaner_checkpoint(&self.dir, &self.cleaner)?;
        }
        if self.cleaner.first_dirty_offset > log_end {
            self.cleaner.first_dirty_offset = log_end.max(self.log_start_offset);
            cleaner::write_cleaner_checkpoint(&self.dir, &self.cleaner)?;
        }
        let high_watermark = self.high_watermark.clamp(self.log_start_offset, log_end);
        if high_watermark != self.high_watermark {
            self.high_watermark = high_watermark;
            self.checkpoint_high_watermark(now_ms)?;
        }
        if self.recovery_point > log_end {
            self.recovery_point = log_end;
            self.checkpoint_recovery_point(now_ms)?;
        }
        if self.epochs.truncate_from_end(log_end) {
            self.epochs.write(&self.dir)?;
        }
        self.rebuild_producer_state()?;
        self.debug_assert_invariants();
        Ok(())
    }

    /// The compaction state: offsets below `first_dirty_offset` have been cleaned.
    pub fn cleaner_checkpoint(&self) -> CleanerCheckpoint {
        self.cleaner
    }

    /// First step of a compaction pass (see [`crate::cleaner`]): when the log is compacted and a
    /// pass is due at `now_ms`, marks a pass as running and returns what the unlocked part needs.
    pub(crate) fn plan_compaction(&mut self, now_ms: i64) -> StorageResult<Option<CompactionPlan>> {
        if !self.config.cleanup_policy_compact || self.cleaning_in_progress {
            return Ok(None);
        }
        let min_lag = self.config.min_compaction_lag_ms;
        // Sealed segments below the high watermark: uncommitted data is never cleaned.
        let cleanable_count = (self.segments.len() - 1).min(self.segments_below_high_watermark());
        let sealed = &self.segments[..cleanable_count];
        let cleanable: Vec<&Segment> = sealed
            .iter()
            .take_while(|segment| {
                min_lag == 0
                    || segment
                        .max_timestamp()
                        .is_none_or(|(newest, _)| now_ms.saturating_sub(newest) >= min_lag)
            })
            .filter(|segment| segment.next_offset() > self.log_start_offset)
            .collect();
        let first_dirty = self.cleaner.first_dirty_offset.max(self.log_start_offset);
        let total_bytes: u64 = cleanable.iter().map(|segment| segment.size()).sum();
        let dirty: Vec<&&Segment> = cleanable
            .iter()
            .filter(|segment| segment.next_offset() > first_dirty)
            .collect();
        let dirty_bytes: u64 = dirty.iter().map(|segment| segment.size()).sum();
        let ratio_due = dirty_bytes > 0
            && dirty_bytes as f64 / total_bytes as f64 >= self.config.min_cleanable_dirty_ratio;
        let max_lag = self.config.max_compaction_lag_ms;
        let lag_due = dirty.first().is_some_and(|segment| {
            let oldest = segment
                .first_batch_timestamp()
                .filter(|&timestamp| timestamp >= 0)
                .unwrap_or(segment.created_ms());
            max_lag != i64::MAX && now_ms.saturating_sub(oldest) > max_lag
        });
        let tombstones_due = !cleanable.is_empty()
            && self
                .cleaner
                .earliest_delete_horizon
                .is_some_and(|horizon| now_ms >= horizon);
        if !(ratio_due || lag_due || tombstones_due) {
            return Ok(None);
        }
        let mut segments = Vec::with_capacity(cleanable.len());
        for (index, segment) in cleanable.iter().enumerate() {
            segments.push(PlannedSegment {
                base_offset: segment.base_offset(),
                size: segment.size(),
                next_offset: segment.next_offset(),
                log: segment.clone_log_handle()?,
                holds_log_start: index == 0,
            });
        }
        self.cleaning_in_progress = true;
        Ok(Some(CompactionPlan {
            dir: self.dir.clone(),
            segments,
            first_dirty_offset: first_dirty,
            now_ms,
            delete_retention_ms: self.config.delete_retention_ms,
            index_interval: self.config.index_interval_bytes,
            max_segment_bytes: self.segment_bytes(),
            producer_last_offsets: self.producers.last_batch_offsets(),
            truncations: self.truncations,
            previous_delete_horizon: self.cleaner.earliest_delete_horizon,
        }))
    }

    /// Ends a pass that failed before its swap, deleting whatever cleaned copies it left (under
    /// the lock, so a new pass cannot have started writing files of the same names).
    pub(crate) fn abort_compaction(&mut self, planned_bases: &[i64]) {
        for &base in planned_bases {
            cleaner::remove_segment_files(&self.dir, base, CLEANED_SUFFIX);
        }
        self.cleaning_in_progress = false;
    }

    /// Last step of a compaction pass: swaps in the cleaned segments that still match the log
    /// (a segment deleted by retention or a truncation meanwhile is skipped), crash-safely via
    /// `.swap` names, and records the cleaner's progress.
    pub(crate) fn install_compaction(
        &mut self,
        cleaned: CleanedLog,
    ) -> StorageResult<CompactionStats> {
        self.cleaning_in_progress = false;
        let mut stats = CompactionStats {
            first_dirty_offset: self.cleaner.first_dirty_offset,
            ..CompactionStats::default()
        };
        if cleaned.truncations != self.truncations {
            for segment in cleaned.cleaned {
                segment.replacement.delete()?;
            }
            tracing::info!(dir = %self.dir.display(), "log truncated while compacting: pass void");
            return Ok(stats);
        }
        let mut swaps = Vec::new();
        let mut deletions = Vec::new();
        for segment in cleaned.cleaned {
            let Some(index) = self.position_of_sealed_run(&segment.members) else {
                segment.replacement.delete()?;
                continue;
            };
            stats.records_removed += segment.records_removed;
            stats.tombstones_removed += segment.tombstones_removed;
            stats.bytes_before += segment.members.iter().map(|&(_, size)| size).sum::<u64>();
            let bases = segment.members.iter().map(|&(base, _)| base);
            if segment.replacement.is_empty() && index > 0 {
                segment.replacement.delete()?;
                deletions.extend(bases);
            } else {
                stats.bytes_after += segment.replacement.size();
                swaps.push((bases.skip(1).collect::<Vec<i64>>(), segment.replacement));
            }
        }
        let committed = swaps
            .iter_mut()
            .try_for_each(|(_, replacement)| replacement.rename_files(SWAP_SUFFIX))
            .and_then(|()| fsync_dir(&self.dir));
        if let Err(error) = committed {
            self.discard_swaps(
                swaps
                    .iter()
                    .map(|(_, replacement)| replacement.base_offset()),
            );
            return Err(error);
        }
        let mut swaps = swaps.into_iter();
        for (merged_away, mut replacement) in swaps.by_ref() {
            let base = replacement.base_offset();
            if let Err(error) = replacement.rename_files("") {
                // Its indexes may already be the new ones beside the old log: drop them, so the
                // next open rebuilds them from the log.
                for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                    let path = segment_file_with(&self.dir, base, suffix, "");
                    if let Err(error) = fs::remove_file(&path) {
                        tracing::warn!(path = %path.display(), %error, "could not delete an index");
                    }
                }
                let rest = swaps.map(|(_, replacement)| replacement.base_offset());
                self.discard_swaps(std::iter::once(base).chain(rest));
                return Err(error);
            }
            // The old segment's files were replaced by the rename: dropping it closes its handles.
            let index = self.segment_position(base);
            if let Some(index) = index {
                drop(std::mem::replace(&mut self.segments[index], replacement));
            }
            stats.segments_rewritten += 1;
            // Merged members go after the merged copy is in: one left by a crash overlaps the
            // merged segment and is deleted on open.
            self.delete_segments_by_base(&merged_away, &mut stats)?;
        }
        fsync_dir(&self.dir)?;
        self.delete_segments_by_base(&deletions, &mut stats)?;
        fsync_dir(&self.dir)?;
        self.cleaner = CleanerCheckpoint {
            first_dirty_offset: cleaned.end_offset,
            earliest_delete_horizon: cleaned.earliest_delete_horizon,
        };
        cleaner::write_cleaner_checkpoint(&self.dir, &self.cleaner)?;
        stats.first_dirty_offset = cleaned.end_offset;
        tracing::debug!(dir = %self.dir.display(), ?stats, "compacted log");
        Ok(stats)
    }

    fn segment_position(&self, base_offset: i64) -> Option<usize> {
        self.segments
            .iter()
            .position(|segment| segment.base_offset() == base_offset)
    }

    /// Where the sealed segments `members` (base offset, size) still lie in the log, consecutive
    /// and unchanged; `None` if any of them went (retention, DeleteRecords) or is the active one.
    fn position_of_sealed_run(&self, members: &[(i64, u64)]) -> Option<usize> {
        let (first, _) = *members.first()?;
        let index = self.segment_position(first)?;
        let unchanged = index + members.len() < self.segments.len()
            && members.iter().enumerate().all(|(k, &(base, size))| {
                let live = &self.segments[index + k];
                live.base_offset() == base && live.size() == size
            });
        unchanged.then_some(index)
    }

    /// Removes the segments with these base offsets from the log and deletes their files.
    fn delete_segments_by_base(
        &mut self,
        bases: &[i64],
        stats: &mut CompactionStats,
    ) -> StorageResult<()> {
        for &base in bases {
            if let Some(index) = self.segment_position(base) {
                self.segments.remove(index).delete()?;
                stats.segments_deleted += 1;
            }
        }
        Ok(())
    }

    /// After a failed swap: deletes the cleaned copies not yet in place, whatever their names, so
    /// that a later recovery cannot complete a swap the log in memory never saw (and that
    /// retention may since have deleted). Best effort: the error being returned matters more.
    fn discard_swaps(&self, bases: impl Iterator<Item = i64>) {
        for base in bases {
            for extra in [SWAP_SUFFIX, CLEANED_SUFFIX] {
                cleaner::remove_segment_files(&self.dir, base, extra);
            }
        }
        if let Err(error) = fsync_dir(&self.dir) {
            tracing::warn!(%error, "could not fsync after discarding a failed compaction swap");
        }
    }

    fn write_log_start_checkpoint(&self) -> StorageResult<()> {
        write_offset_checkpoint(&self.dir, LOG_START_CHECKPOINT, self.log_start_offset)
    }
}

/// Kafka's record timestamp number for "no timestamp", never checked against the bounds.
const NO_TIMESTAMP: i64 = -1;

/// The `message.timestamp.before.max.ms` / `after.max.ms` bounds in force on a CreateTime log.
#[derive(Debug, Clone, Copy)]
struct TimestampBounds {
    before_max_ms: i64,
    after_max_ms: i64,
}

impl TimestampBounds {
    /// The bounds to check, or `None` when nothing can fail them (LogAppendTime, where the broker
    /// sets the timestamps, or both bounds unlimited).
    fn of(config: &LogConfig) -> Option<Self> {
        let bounds = Self {
            before_max_ms: config.timestamp_before_max_ms(),
            after_max_ms: config.timestamp_after_max_ms(),
        };
        let unlimited = bounds.before_max_ms == i64::MAX && bounds.after_max_ms == i64::MAX;
        (!config.timestamp_type_log_append && !unlimited).then_some(bounds)
    }

    /// Kafka's `recordHasInvalidTimestamp`, with Java's wrapping arithmetic.
    fn rejects(&self, timestamp: i64, now_ms: i64) -> bool {
        let behind = now_ms.wrapping_sub(timestamp);
        timestamp != NO_TIMESTAMP
            && (behind > self.before_max_ms || behind.wrapping_neg() > self.after_max_ms)
    }

    fn error(&self, timestamp: i64, offset: i64, batch_index: usize, now_ms: i64) -> StorageError {
        StorageError::InvalidTimestamp {
            timestamp,
            offset,
            batch_index,
            lower: now_ms.saturating_sub(self.before_max_ms),
            upper: now_ms.saturating_add(self.after_max_ms),
        }
    }

    /// Checks every record of an uncompressed batch (only the leading fields of each record are
    /// decoded). A compressed batch is checked by its base timestamp (its first record's) and its
    /// max timestamp, without decompressing it; only when one of them fails is the batch
    /// decompressed, to name the first offending record as Kafka does. Offsets are the producer's
    /// (Kafka validates before assigning offsets).
    fn check(&self, header: &BatchHeader, batch: &Bytes, now_ms: i64) -> StorageResult<()> {
        if is_uncompressed(header) {
            let mut index = 0usize;
            let mut offending = None;
            let well_formed =
                walk_records(header, &batch[BATCH_HEADER_LEN..], |offset, timestamp| {
                    if self.rejects(timestamp, now_ms) {
                        offending = Some((timestamp, offset, index));
                        return true;
                    }
                    index += 1;
                    false
                });
            if let Some((timestamp, offset, index)) = offending {
                return Err(self.error(timestamp, offset, index, now_ms));
            }
            if well_formed {
                return Ok(());
            }
        }
        let base_rejected = self.rejects(header.base_timestamp, now_ms);
        if !base_rejected && !self.rejects(header.max_timestamp, now_ms) {
            return Ok(());
        }
        if let Ok(records) = decode_records(batch, DEFAULT_MAX_DECOMPRESSED_BYTES) {
            let offending = records
                .iter()
                .enumerate()
                .find(|(_, record)| self.rejects(record.timestamp(header), now_ms));
            if let Some((index, record)) = offending {
                return Err(self.error(
                    record.timestamp(header),
                    record.offset(header),
                    index,
                    now_ms,
                ));
            }
        }
        Err(if base_rejected {
            self.error(header.base_timestamp, header.base_offset, 0, now_ms)
        } else {
            self.error(
                header.max_timestamp,
                header.last_offset(),
                header.last_offset_delta.max(0) as usize,
                now_ms,
            )
        })
    }
}

/// Whether an uncompressed batch holds exactly the records its header counts: following each
/// record's length prefix must end precisely at the end of the batch (Kafka's record iterator
/// refuses both a batch that runs out early and one with bytes left over). Without this, a batch
/// of one record claiming `i32::MAX` would move the log end offset by two billion.
fn records_fill_batch(header: &BatchHeader, batch: &Bytes) -> bool {
    let mut rest = batch.slice(BATCH_HEADER_LEN..);
    for _ in 0..header.record_count {
        let Ok(length) = get_varint(&mut rest) else {
            return false;
        };
        match usize::try_from(length) {
            Ok(length) if length <= rest.len() => rest.advance(length),
            _ => return false,
        }
    }
    rest.is_empty()
}

/// The max timestamp a CreateTime batch is stored with: its records' largest timestamp, as Kafka
/// derives it on append (`NO_TIMESTAMP` when no record has one). Uncompressed records are walked
/// (cheaply: only their leading fields); a compressed batch is trusted unless its header has no max
/// timestamp, in which case it is decompressed (older clients, such as sarama 1.22, write -1).
fn records_max_timestamp(header: &BatchHeader, batch: &Bytes) -> StorageResult<i64> {
    if is_uncompressed(header) {
        let mut max_timestamp = NO_TIMESTAMP;
        walk_records(header, &batch[BATCH_HEADER_LEN..], |_, timestamp| {
            max_timestamp = max_timestamp.max(timestamp);
            false
        });
        return Ok(max_timestamp);
    }
    if header.max_timestamp != NO_TIMESTAMP {
        return Ok(header.max_timestamp);
    }
    let records = decode_records(batch, DEFAULT_MAX_DECOMPRESSED_BYTES)
        .map_err(|error| StorageError::CorruptRecords(error.to_string()))?;
    Ok(records
        .iter()
        .map(|record| record.timestamp(header))
        .fold(NO_TIMESTAMP, i64::max))
}

/// Where a v2 batch keeps its CRC-32C, where the bytes the CRC covers start, and where its max
/// timestamp lies (Kafka's batch layout).
const CRC_AT: usize = 17;
const CRC_COVERS_FROM: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;

/// Sets the max timestamp of a CreateTime batch in place and recomputes its CRC (the field lies
/// under it), as Kafka's `setMaxTimestamp` does.
fn set_create_time_max_timestamp(batch: &mut [u8], max_timestamp: i64) {
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_COVERS_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Refuses a batch holding records without key (Kafka: a compacted topic cannot accept one),
/// naming each by its index in the batch.
fn check_records_have_keys(batch: &Bytes) -> StorageResult<()> {
    let records = decode_records(batch, DEFAULT_MAX_DECOMPRESSED_BYTES)
        .map_err(|error| StorageError::CorruptRecords(error.to_string()))?;
    let batch_indexes: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, record)| record.key.is_none())
        .map(|(index, _)| index)
        .collect();
    if batch_indexes.is_empty() {
        Ok(())
    } else {
        Err(StorageError::RecordsWithoutKey { batch_indexes })
    }
}

/// Reads a single-offset checkpoint file `name` of `dir` (a version line, then the offset), if
/// present and well formed.
fn read_offset_checkpoint(dir: &Path, name: &str) -> StorageResult<Option<i64>> {
    let path = dir.join(name);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(StorageError::io(
                format!("reading {}", path.display()),
                error,
            ))
        }
    };
    let mut lines = text.lines();
    match (
        lines.next(),
        lines.next().map(|line| line.trim().parse::<i64>()),
    ) {
        (Some(CHECKPOINT_VERSION), Some(Ok(offset))) if offset >= 0 => Ok(Some(offset)),
        _ => {
            tracing::warn!(path = %path.display(), "ignoring malformed checkpoint");
            Ok(None)
        }
    }
}

/// Writes a single-offset checkpoint file `name` of `dir` (atomically, fsynced).
fn write_offset_checkpoint(dir: &Path, name: &str, offset: i64) -> StorageResult<()> {
    let text = format!("{CHECKPOINT_VERSION}\n{offset}\n");
    write_file_atomically(&dir.join(name), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_protocol::records::{BatchBuilder, Compression};

    /// A one-record batch whose last offset delta and record count are overwritten (CRC fixed up).
    fn batch_claiming(last_offset_delta: i32, record_count: i32) -> Bytes {
        let mut builder = BatchBuilder::new(0, Compression::None, 1_700_000_000_000);
        builder.push(
            1_700_000_000_000,
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(b"v")),
            Vec::new(),
        );
        let mut batch = builder.build().to_vec();
        batch[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
        batch[57..61].copy_from_slice(&record_count.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(batch)
    }

    #[test]
    fn hostile_record_counts_are_refused_without_moving_the_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open log");
        for (last_offset_delta, record_count) in [
            (i32::MAX, i32::MAX),
            (i32::MAX - 1, i32::MAX),
            (1, 2),
            (0, 0),
        ] {
            let result = log.append(&batch_claiming(last_offset_delta, record_count), 0, 0);
            assert!(
                matches!(result, Err(StorageError::InvalidRecord(_))),
                "delta {last_offset_delta}, count {record_count}: {result:?}"
            );
        }
        assert_eq!(log.log_end_offset(), 0);
        let outcome = log
            .append(&batch_claiming(0, 1), 0, 0)
            .expect("valid batch");
        assert_eq!((outcome.base_offset, log.log_end_offset()), (0, 1));
    }
}
