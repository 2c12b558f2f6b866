//! `strom-storage`: the on-disk commit log of a Kafka partition.
//!
//! Each partition is a directory (given by the caller, e.g. `<log.dirs>/<topic>-<partition>`) of
//! segments named by their base offset, Kafka style: `00000000000000000000.log` holds record
//! batches (magic v2) exactly as received, after the broker patched the base offset, the partition
//! leader epoch and, under LogAppendTime, the max timestamp (with the CRC recomputed);
//! `.index` is a sparse offset index (one entry per `index.interval.bytes` of log) and
//! `.timeindex` a time index. Beside them: `log-start-offset.checkpoint` (the log start offset
//! moved by DeleteRecords or retention), `replication-offset-checkpoint` (the high watermark),
//! `recovery-point-offset-checkpoint` (the offset up to which the log is known fsynced),
//! `leader-epoch-checkpoint` (the leader-epoch cache, Kafka's format: see [`leader_epoch`]),
//! `cleaner-offset.checkpoint` (see [`cleaner`]) and `<offset>.snapshot` files (idempotent producer
//! state). Kafka keeps the high watermark and recovery point files per log directory, one line per
//! partition; here each partition directory has its own (a version line `0`, then the offset).
//!
//! # Leader and follower appends, the high watermark
//! As Kafka's `UnifiedLog`, the log has two ways in: [`PartitionLog::append`], the leader append,
//! assigns offsets and stamps batches with the caller's leader epoch;
//! [`PartitionLog::append_as_follower`] stores a leader's batches byte for byte after checking them
//! (length, magic, CRC, offsets at or after the log end and increasing). Neither moves the high
//! watermark: its owner does ([`PartitionLog::update_high_watermark`], clamped to
//! `[log start, log end]`), on a single node right after each leader append. Consumers read, and
//! ListOffsets answers, below it; DeleteRecords, retention and the cleaner never pass it. Both
//! appends record each batch's leader epoch in the leader-epoch cache, which answers
//! OffsetForLeaderEpoch ([`PartitionLog::end_offset_for_epoch`]) and is cut back by truncations
//! from either end.
//!
//! # Durability: what is fsynced when
//! - **Append**: written with one `pwritev` (looping over short writes; cut back to the old size
//!   on failure) of, per batch, a patched copy of its first 17 bytes (base offset, length,
//!   leader epoch, magic: all before the CRC) and the rest of the batch straight from the request
//!   buffer, so record data is not copied; only LogAppendTime batches and batches whose max
//!   timestamp is corrected, whose CRC changes, are copied and patched whole. A follower append
//!   writes the leader's batches unchanged, the same way. The OS flushes it unless `flush.messages` appends have
//!   accumulated, in which case the active `.log` is fsynced (`fdatasync`) before `append` returns.
//!   `flush.messages=1` therefore means "fsync before ack". Index entries are written but not
//!   fsynced (the tail segment's indexes are rebuilt on recovery).
//! - **`flush.ms`**: [`PartitionLog::maybe_roll_and_flush`] / [`PartitionLog::maybe_flush_by_time`]
//!   fsync the active `.log` when unflushed data is older than `flush.ms`.
//! - **Segment roll**: the old segment's `.log`, `.index` and `.timeindex` are fsynced (after the
//!   final time index entry is written), the recovery point checkpoint (now the new segment's base)
//!   and a producer snapshot are written, then the new segment's
//!   files are created and the directory is fsynced. Only the active segment can hold unsynced data.
//! - **Checkpoint and snapshot files**: written to `<name>.tmp`, fsynced, renamed over the target,
//!   then the directory is fsynced. When: the log start checkpoint whenever the log start moves;
//!   the leader-epoch checkpoint whenever the cache changes (a new epoch is written *before* the
//!   data it stamps, so a crash may leave an epoch without data, trimmed on open, never data
//!   without its epoch; truncations; the log start passing an epoch's start); the recovery point
//!   at each segment roll, on truncation below it, on [`PartitionLog::flush`] and otherwise every
//!   60 s by [`PartitionLog::maybe_roll_and_flush`] if it moved (it moves in memory whenever the
//!   active segment is fsynced); the high watermark on [`PartitionLog::flush`], on truncation below
//!   it and otherwise every 5 s by [`PartitionLog::maybe_roll_and_flush`] if it moved (Kafka's
//!   `replica.high.watermark.checkpoint.interval.ms` and `log.flush.offset.checkpoint.interval.ms`
//!   defaults). A crash can thus lose the last seconds of high watermark moves: the reopened log
//!   starts from the checkpointed value (clamped to the log end) and its owner moves it on (a
//!   single-node broker at once to the log end).
//! - **Segment deletion** (retention, DeleteRecords, truncation): the directory is fsynced after.
//! - **[`PartitionLog::flush`] / [`PartitionLog::close`]**: fsync the active segment's three files,
//!   write a producer snapshot at the log end offset, the recovery point (now the log end) and
//!   high watermark checkpoints, and the clean-shutdown marker.
//!
//! # Recovery
//! On [`PartitionLog::open`] every segment reaching past the recovery point, and always the last
//! one, is read batch by batch, checking length, magic and CRC-32C; the file is cut at the first
//! torn or corrupt batch (logged with the bytes dropped) and its indexes rebuilt; when that cuts a
//! sealed segment, the segments after it are deleted, as in Kafka. (Rolls fsync the old segment and
//! checkpoint the recovery point, so in practice only the last segment is past it; a log without
//! the checkpoint is taken as flushed up to its last segment, the guarantee rolls always gave.)
//! That scan is skipped after a clean shutdown: [`PartitionLog::flush`] (and
//! so [`PartitionLog::close`]) leaves a `clean-shutdown` marker file, removed by `open` and by the
//! first append after the flush; with it present the tail's indexes are trusted like a sealed
//! segment's (still falling back to the full scan if they do not match the file). Segments below
//! the recovery point are trusted when their index files are consistent with
//! the log file size, and re-indexed otherwise. Before that, interrupted compaction swaps are
//! completed or discarded, and a segment starting inside the previous one (left by a compaction
//! merge interrupted by a crash) is deleted; see [`cleaner`]. Producer state comes from the
//! newest snapshot at or below the log end, plus a replay of the batch headers after it. The
//! leader-epoch cache is read from its checkpoint (rebuilt from the batch headers when the file is
//! missing) and trimmed to the log's offsets; the high watermark is read from its checkpoint and
//! clamped to the log.
//!
//! # Retention and the log start offset
//! [`PartitionLog::apply_retention`] (with `cleanup.policy` containing `delete`) deletes whole
//! segments from the oldest: while their newest timestamp is more than `retention.ms` old, and while
//! the log without them still exceeds `retention.bytes`, and only segments wholly below the high
//! watermark (as Kafka). As in Kafka, when every segment qualifies the active one is first rolled
//! (a new empty segment at the log end) so it can go too. The log start offset then moves to the
//! first remaining segment. [`PartitionLog::delete_records_before`] (DeleteRecords) moves it
//! explicitly to any offset up to the high watermark (beyond: `OffsetOutOfRange`, as Kafka; the
//! broker resolves Kafka's `-1` = high watermark) and deletes the sealed segments wholly below it. The log start offset is
//! persisted in `log-start-offset.checkpoint`; reads below it are `OffsetOutOfRange`.
//!
//! # Compaction
//! With `cleanup.policy` containing `compact`, [`compact_now`] (called periodically by the broker
//! for such partitions) keeps the latest record per key in the sealed segments wholly below the
//! high watermark (Kafka cleans below its first unstable offset, at most the high watermark), drops
//! tombstones
//! `delete.retention.ms` after the pass that first kept them, and never moves an offset or the log
//! start offset; appends and reads go on while segments are cleaned. Appends of records without
//! key are refused (`RecordsWithoutKey`, naming each such record's index in its batch). See [`cleaner`] for the pass, the `.cleaned`/`.swap` files,
//! crash recovery and `cleaner-offset.checkpoint`. With `compact,delete` both compaction and
//! [`PartitionLog::apply_retention`] apply.
//!
//! # Memory
//! The offset and time indexes of every segment are held in memory (about 20 bytes per
//! `index.interval.bytes` of log, i.e. ~5 MiB per GiB at the default interval).
//!
//! # Idempotent producers
//! See [`producer_state`]: Kafka's rules, keeping the last five batches per producer id; a producer
//! id without state is accepted at any sequence number. A follower append records the leader's
//! batches in the same state without judging them.
//!
//! # Timestamps
//! [`PartitionLog::offset_for_timestamp`] finds the first record with a timestamp at or after the
//! target by decoding the leading fields of records in uncompressed batches, and by decompressing
//! compressed batches (bounded, as any decode), as Kafka does. Under LogAppendTime every
//! record of a batch carries the batch's append time. It searches up to the log end; ListOffsets
//! drops an answer at or after the high watermark, as Kafka's `Partition` does.
//!
//! The time index is built from the batches' header max timestamps. On a CreateTime log the
//! leader append stores, as Kafka does, the max timestamp of the batch's records when the header's
//! differs (older clients, such as sarama 1.22, write -1): that batch is copied and its header and
//! CRC rewritten. Uncompressed batches are checked by walking their records' leading fields; a
//! compressed batch is decompressed for it only when its header says -1.
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
