//! `strom-storage`: the on-disk commit log of a Kafka partition.
//!
//! Each partition is a directory (given by the caller, e.g. `<log.dirs>/<topic>-<partition>`) of
//! segments named by their base offset, Kafka style: `00000000000000000000.log` holds record
//! batches (magic v2) exactly as received, after the broker patched the base offset, the partition
//! leader epoch and, under LogAppendTime, the max timestamp (with the CRC recomputed);
//! `.index` is a sparse offset index (one entry per `index.interval.bytes` of log) and
//! `.timeindex` a time index. Beside them: `log-start-offset.checkpoint` (the log start offset
//! moved by DeleteRecords or retention) and `<offset>.snapshot` files (idempotent producer state).
//!
//! # Durability: what is fsynced when
//! - **Append**: written with one `pwritev` (looping over short writes; cut back to the old size
//!   on failure) of, per batch, a patched copy of its first 17 bytes (base offset, length,
//!   leader epoch, magic: all before the CRC) and the rest of the batch straight from the request
//!   buffer, so record data is not copied; only LogAppendTime batches, whose CRC changes, are
//!   copied and patched whole. The OS flushes it unless `flush.messages` appends have
//!   accumulated, in which case the active `.log` is fsynced (`fdatasync`) before `append` returns.
//!   `flush.messages=1` therefore means "fsync before ack". Index entries are written but not
//!   fsynced (the tail segment's indexes are rebuilt on recovery).
//! - **`flush.ms`**: [`PartitionLog::maybe_roll_and_flush`] / [`PartitionLog::maybe_flush_by_time`]
//!   fsync the active `.log` when unflushed data is older than `flush.ms`.
//! - **Segment roll**: the old segment's `.log`, `.index` and `.timeindex` are fsynced (after the
//!   final time index entry is written), a producer snapshot is written, then the new segment's
//!   files are created and the directory is fsynced. Only the active segment can hold unsynced data.
//! - **Checkpoint and snapshot files**: written to `<name>.tmp`, fsynced, renamed over the target,
//!   then the directory is fsynced.
//! - **Segment deletion** (retention, DeleteRecords, truncation): the directory is fsynced after.
//! - **[`PartitionLog::flush`] / [`PartitionLog::close`]**: fsync the active segment's three files,
//!   write a producer snapshot at the log end offset and the clean-shutdown marker.
//!
//! # Recovery
//! On [`PartitionLog::open`] the last segment is read batch by batch, checking length, magic and
//! CRC-32C; the file is cut at the first torn or corrupt batch (logged with the bytes dropped) and
//! its indexes rebuilt. That scan is skipped after a clean shutdown: [`PartitionLog::flush`] (and
//! so [`PartitionLog::close`]) leaves a `clean-shutdown` marker file, removed by `open` and by the
//! first append after the flush; with it present the tail's indexes are trusted like a sealed
//! segment's (still falling back to the full scan if they do not match the file). Earlier segments are trusted when their index files are consistent with
//! the log file size, and re-indexed otherwise. Before that, interrupted compaction swaps are
//! completed or discarded, and a segment starting inside the previous one (left by a compaction
//! merge interrupted by a crash) is deleted; see [`cleaner`]. Producer state comes from the
//! newest snapshot at or below the log end, plus a replay of the batch headers after it.
//!
//! # Retention and the log start offset
//! [`PartitionLog::apply_retention`] (with `cleanup.policy` containing `delete`) deletes whole
//! segments from the oldest: while their newest timestamp is more than `retention.ms` old, and while
//! the log without them still exceeds `retention.bytes`. As in Kafka, when every segment qualifies
//! the active one is first rolled (a new empty segment at the log end) so it can go too. The log
//! start offset then moves to the first remaining segment. [`PartitionLog::delete_records_before`]
//! (DeleteRecords) moves it explicitly to any offset up to the log end (the broker resolves Kafka's
//! `-1` = high watermark) and deletes the sealed segments wholly below it. The log start offset is
//! persisted in `log-start-offset.checkpoint`; reads below it are `OffsetOutOfRange`.
//!
//! # Compaction
//! With `cleanup.policy` containing `compact`, [`compact_now`] (called periodically by the broker
//! for such partitions) keeps the latest record per key in the sealed segments, drops tombstones
//! `delete.retention.ms` after the pass that first kept them, and never moves an offset or the log
//! start offset; appends and reads go on while segments are cleaned. Appends of records without
//! key are refused (`InvalidRecord`). See [`cleaner`] for the pass, the `.cleaned`/`.swap` files,
//! crash recovery and `cleaner-offset.checkpoint`. With `compact,delete` both compaction and
//! [`PartitionLog::apply_retention`] apply.
//!
//! # Memory
//! The offset and time indexes of every segment are held in memory (about 20 bytes per
//! `index.interval.bytes` of log, i.e. ~5 MiB per GiB at the default interval).
//!
//! # Idempotent producers
//! See [`producer_state`]: Kafka's rules, keeping the last five batches per producer id; a producer
//! id without state is accepted at any sequence number.
//!
//! # Timestamps
//! [`PartitionLog::offset_for_timestamp`] finds the first record with a timestamp at or after the
//! target by decoding the leading fields of records in uncompressed batches, and by decompressing
//! compressed batches (bounded, as any decode), as Kafka does. Under LogAppendTime every
//! record of a batch carries the batch's append time.
//!
//! [`PartitionLog::max_timestamp`] (ListOffsets MAX_TIMESTAMP) answers like Kafka 3.8+: the
//! offset of the first record carrying the largest timestamp, also inside a compressed batch. The
//! indexes only know that batch (its last offset stands for it), so that one batch is decompressed
//! when asked rather than every compressed batch on append. Under LogAppendTime it is the first
//! record of the batch.
//!
//! On a CreateTime log, `append` refuses (`InvalidTimestamp`, Kafka error 32) a batch with a
//! record more than `message.timestamp.before.max.ms` older or `message.timestamp.after.max.ms`
//! newer than the broker's clock (each falling back to `message.timestamp.difference.max.ms` when
//! left at its default), as Kafka 3.6+ (KIP-937) does. Uncompressed batches have every record
//! checked; compressed ones are checked by their base and max timestamps (decompressed only to
//! name the offending record once one fails), so a compressed record older than the batch's first
//! one escapes the "before" bound. Records without timestamp (-1) always pass.

pub mod cleaner;
pub mod config;
pub mod error;
pub mod leader_epoch;
pub mod log;
pub mod producer_state;
mod segment;

pub use cleaner::{compact_now, CleanerCheckpoint, CompactionStats};
pub use config::{ConfigValueError, LogConfig};
pub use error::{StorageError, StorageResult};
pub use leader_epoch::{EpochEntry, LeaderEpochCache, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use log::{AppendOutcome, PartitionLog};
