//! The partitions this broker hosts: one owner ([`Partition`]) per partition, and the registry
//! that keeps them in line with the metadata image.
//!
//! # The owner
//! A [`Partition`] holds everything about one replica: its role (leader, follower, or offline
//! after a storage failure), the leader epoch the metadata image gives it, its
//! [`PartitionLog`], and its high watermark, which it publishes on a `watch` channel so that
//! waiting requests ([`crate::purgatory`]) wake when this partition's high watermark moves and
//! for nothing else. Handlers call the owner's methods (append as leader, read, look up an
//! offset, delete records, housekeeping, compaction) and never lock the log themselves. The
//! high watermark moves in one place, [`Partition`]'s `maybe_advance_high_watermark`: the
//! smallest log end offset among the in-sync replicas, which today is this broker alone, so it
//! is the log end offset right after each leader append. Replication plugs in there (and in the
//! role, which only a leader and the metadata image change today).
//!
//! # Threads
//! The owner's methods that touch the log block on the disk (a write into a page cache under
//! writeback pressure, an fsync under `flush.messages`, a read of cold data, a segment roll); the
//! owner itself is synchronous, and no tokio worker ever runs them while it holds other tasks.
//! Request handlers call them through [`off_worker`], which uses `tokio::task::block_in_place`:
//! the worker first hands its core (its queue of tasks and its I/O driver turn) to another
//! thread, then runs the call on the now task-free thread and takes a core back afterwards. So
//! a partition that fsyncs holds up no other connection, and the request itself pays no thread
//! handoff. Background work (housekeeping, compaction, metadata effects, the group coordinator)
//! runs on the blocking pool (`spawn_blocking`).
//!
//! Why not `spawn_blocking` for requests too (or a per-partition append thread, which has the
//! same shape): the request then waits for two thread wake-ups (the pool thread, then its own
//! worker) on the critical path of every produce and fetch. Measured in one alternating round
//! (BENCHMARKS.md, issue 6 section; release build, 10,000 acks=all records/s of 1 KiB, on the
//! shared 2-core machine): median p50 0.21 ms with `spawn_blocking`, 0.16 ms with
//! `block_in_place`, 0.14 ms before this change (appends inline on the worker); with another
//! topic fsyncing every append, 0.35 ms against 0.20 ms. A thread per disk would queue every
//! partition of that disk behind one fsync, which is what this design exists to avoid. Requests
//! for one partition are ordered by its log lock in any case. A fetch at the high watermark
//! (a consumer that has caught up) needs no log at all: [`Partition::read_caught_up`] answers it
//! from the published offsets, on the worker, so long polls cost no handoff.
//!
//! # Storage failures
//! An I/O error ([`StorageError::Io`]: disk full, EIO...) while appending, reading, rolling,
//! flushing, cleaning or deleting takes the partition offline, as Kafka takes a failed log
//! directory offline: one ERROR line when it happens, then every request for it gets
//! KAFKA_STORAGE_ERROR without touching the disk, Metadata reports it with that error and this
//! broker in its offline replicas, and it stays offline until the broker restarts. A partition
//! whose directory cannot be created or whose log cannot be opened is registered offline (not
//! left out), so clients and CreateTopics learn why. Refusals of the request itself (invalid
//! records, offsets out of range...) are not storage failures.
//!
//! # Directories
//! Directory layout follows Kafka: `<log.dirs>/<topic>-<partition>/`, and each partition directory
//! holds Kafka's `partition.metadata` file naming the topic id it belongs to. A directory is only
//! ever opened for the topic id it names: one left behind by another incarnation of a topic (say,
//! the metadata that knew it was lost, and a topic of the same name was created again), or one the
//! metadata does not know at all, is renamed aside with a `-stray` suffix and reported at WARN,
//! never adopted silently. A directory without the file (written before Strom kept it) is adopted
//! once, with a WARN line, and the file is written. The directory of a deleted partition is first
//! renamed to `<topic>-<partition>.<id>-delete` (so that nothing still holding the old owner can
//! write into a new incarnation's directory), then removed. Logs are opened and deleted without
//! the registry's lock: a lookup never waits for the disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use bytes::Bytes;
use strom_metadata::meta_properties::base64url;
use strom_metadata::{MetadataImage, PartitionImage};
use strom_protocol::ErrorCode;
use strom_storage::{compact_now, LogConfig, PartitionLog, StorageError};
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::replica_set::{IsrChange, ReplicaSet};
use crate::state::now_ms;

/// How long a leader waits after a refused or failed ISR change before it proposes another.
const ISR_CHANGE_RETRY_BACKOFF_MS: i64 = 1000;

/// ListOffsets' special timestamps (Kafka's `ListOffsetsRequest` constants).
pub mod special_timestamps {
    /// The high watermark (or last stable offset: the same until transactions exist).
    pub const LATEST: i64 = -1;
    /// The log start offset.
    pub const EARLIEST: i64 = -2;
    /// The record with the largest timestamp (KIP-734).
    pub const MAX_TIMESTAMP: i64 = -3;
    /// The local log start offset (KIP-1005): the log start, as nothing is tiered.
    pub const EARLIEST_LOCAL: i64 = -4;
    /// The earliest offset pending upload to tiered storage (KIP-1023): none.
    pub const EARLIEST_PENDING_UPLOAD: i64 = -5;
}

/// What this broker is for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It takes appends and serves consumers.
    Leader,
    /// Another broker leads (replication will fetch from it).
    Follower,
    /// Its storage failed; nothing is served until the broker restarts.
    Offline,
}

/// Why a partition's owner did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The partition's storage failed (KAFKA_STORAGE_ERROR).
    #[error("partition {0} is offline: its storage failed")]
    Offline(String),
    /// This broker does not lead the partition (NOT_LEADER_OR_FOLLOWER), or no longer hosts it.
    #[error("this broker is not the leader of partition {0}")]
    NotLeader(String),
    /// The request names an older leader epoch than this broker's (FENCED_LEADER_EPOCH).
    #[error("partition {0}: the request's leader epoch {1} is older than this broker's {2}")]
    FencedLeaderEpoch(String, i32, i32),
    /// The request names a newer leader epoch than this broker knows (UNKNOWN_LEADER_EPOCH).
    #[error("partition {0}: the request's leader epoch {1} is newer than this broker's {2}")]
    UnknownLeaderEpoch(String, i32, i32),
    /// A replica fetch from a broker that is not a replica of the partition
    /// (NOT_LEADER_OR_FOLLOWER, as Kafka answers it).
    #[error("broker {1} is not a replica of partition {0}")]
    NotAReplica(String, i32),
    /// DeleteRecords on a topic whose `cleanup.policy` lacks `delete` (POLICY_VIOLATION).
    #[error("records of partition {0} cannot be deleted: its cleanup.policy lacks delete")]
    DeleteNotAllowed(String),
    /// An acks=all produce whose records the in-sync replicas did not all get in time
    /// (REQUEST_TIMED_OUT).
    #[error("the in-sync replicas of partition {0} did not reach the appended records in time")]
    ReplicationTimedOut(String),
    /// The request was refused by the log (invalid records, offset out of range...); never an
    /// I/O error, which takes the partition offline instead.
    #[error(transparent)]
    Refused(StorageError),
}

impl PartitionError {
    /// The Kafka error code clients get.
    pub fn error_code(&self) -> i16 {
        match self {
            Self::Offline(_) => ErrorCode::KafkaStorageError.code(),
            Self::NotLeader(_) | Self::NotAReplica(..) => ErrorCode::NotLeaderOrFollower.code(),
            Self::FencedLeaderEpoch(..) => ErrorCode::FencedLeaderEpoch.code(),
            Self::UnknownLeaderEpoch(..) => ErrorCode::UnknownLeaderEpoch.code(),
            Self::DeleteNotAllowed(_) => ErrorCode::PolicyViolation.code(),
            Self::ReplicationTimedOut(_) => ErrorCode::RequestTimedOut.code(),
            Self::Refused(error) => error.kafka_error_code(),
        }
    }
}

/// A successful leader append.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub base_offset: i64,
    /// The offset the high watermark must pass for the append to be committed, minus one.
    pub last_offset: i64,
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

/// A refused leader append, with the log start offset Kafka reports beside the error (-1 when the
/// log was not reached).
#[derive(Debug)]
pub struct AppendFailure {
    pub error: PartitionError,
    pub log_start_offset: i64,
}

/// Batches read from a partition, with its offsets at the time of the read.
#[derive(Debug)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// One partition of a Fetch request, as the owner judges it.
#[derive(Debug, Clone, Copy)]
pub struct FetchPosition {
    /// The fetching follower's broker id; `None` for a consumer.
    pub replica_id: Option<i32>,
    pub fetch_offset: i64,
    /// The leader epoch the fetcher believes current (-1: not checked).
    pub current_leader_epoch: i32,
    /// The epoch of the last batch the fetcher holds (-1: not checked), for KIP-595 style
    /// divergence detection.
    pub last_fetched_epoch: i32,
}

/// What a fetch read, or where the fetcher's log diverges from this leader's.
#[derive(Debug)]
pub enum FetchOutcome {
    Records(ReadResult),
    /// The fetcher's log diverges after `end_offset` of `epoch` (the fetch response's
    /// `diverging_epoch`): it must truncate there and fetch again.
    Diverging {
        epoch: i32,
        end_offset: i64,
        high_watermark: i64,
        log_start_offset: i64,
    },
}

/// What a follower sends its leader: where its log ends and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerPosition {
    pub leader_epoch: i32,
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    pub log_start_offset: i64,
}

/// The range of offsets a partition's log holds at one moment.
#[derive(Debug, Clone, Copy)]
pub struct LogOffsets {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// What a partition publishes to waiting requests (and to fetches that are caught up, which
/// need nothing else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// The owner of one hosted partition.
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub topic_id: [u8; 16],
    /// The leader epoch. Operations hold it for reading while they use the log, so a change of
    /// leadership (which takes it for writing) never interleaves with an append (Kafka's
    /// leader-ISR lock).
    leader_epoch: RwLock<i32>,
    /// This broker leads the partition; changed only under the `leader_epoch` write lock, read
    /// without a lock.
    leader: AtomicBool,
    /// The registry dropped the partition (its topic was deleted): nothing is served any more.
    /// Set under the `leader_epoch` write lock.
    removed: AtomicBool,
    /// Set once by the first storage failure; never cleared.
    offline: AtomicBool,
    /// `None` when the log could not be opened (the partition is offline from the start).
    log: Option<Mutex<PartitionLog>>,
    /// The replicas as the leader sees them (ISR, followers' progress); locked after `log`.
    replica_set: Mutex<ReplicaSet>,
    /// The log end offset, published to followers' fetches waiting at this leader.
    log_end: watch::Sender<i64>,
    /// As a follower: the leader's high watermark in its last fetch response (-1 before one).
    leader_high_watermark: std::sync::atomic::AtomicI64,
    /// The high watermark and log start offset, published to waiting requests. Also woken
    /// (unchanged) when the partition goes offline or is removed, so that waiters look again.
    published: watch::Sender<Published>,
}

impl Partition {
    /// An owner for `log` (or an offline one when the log could not be opened), with the role
    /// and leader epoch of `image` for broker `node_id`.
    fn new(
        topic: String,
        index: i32,
        topic_id: [u8; 16],
        log: Option<PartitionLog>,
        node_id: i32,
        image: &PartitionImage,
    ) -> Self {
        let published = Published {
            high_watermark: log.as_ref().map_or(-1, PartitionLog::high_watermark),
            log_start_offset: log.as_ref().map_or(-1, PartitionLog::log_start_offset),
        };
        let offline = log.is_none();
        let log_end_offset = log.as_ref().map_or(-1, PartitionLog::log_end_offset);
        let partition = Partition {
            topic,
            index,
            topic_id,
            leader_epoch: RwLock::new(image.leader_epoch),
            leader: AtomicBool::new(image.leader == node_id),
            removed: AtomicBool::new(false),
            offline: AtomicBool::new(offline),
            log: log.map(Mutex::new),
            replica_set: Mutex::new(ReplicaSet::new(node_id, image, log_end_offset, now_ms())),
            log_end: watch::Sender::new(log_end_offset),
            leader_high_watermark: std::sync::atomic::AtomicI64::new(-1),
            published: watch::Sender::new(published),
        };
        if image.leader == node_id {
            // A new leader's high watermark moves once its in-sync followers report their log
            // ends (at once when it is the only in-sync replica).
            if let Some(Ok(mut log)) = partition.lock_log() {
                match log.assign_leader_epoch(image.leader_epoch) {
                    Ok(()) => partition.maybe_advance_high_watermark(&mut log),
                    Err(error) => {
                        drop(log);
                        partition.take_offline("becoming leader", &error);
                    }
                }
            }
        }
        partition
    }

    /// `<topic>-<index>`, as log lines and errors name it.
    pub fn name(&self) -> String {
        format!("{}-{}", self.topic, self.index)
    }

    /// Offline after a storage failure; otherwise leader or follower as the metadata image says
    /// (a partition the registry dropped is no longer a leader).
    /// Never waits for a lock: workers may ask.
    pub fn role(&self) -> Role {
        if self.offline.load(Ordering::Acquire) {
            Role::Offline
        } else if self.leader.load(Ordering::Acquire) && !self.removed.load(Ordering::Acquire) {
            Role::Leader
        } else {
            Role::Follower
        }
    }

    /// The leader epoch of the metadata image this broker last applied.
    pub fn leader_epoch(&self) -> i32 {
        *self.epoch_guard()
    }

    /// A receiver that sees every later move of the high watermark (or log start offset), and
    /// wakes when the partition goes offline or is removed.
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.published.subscribe()
    }

    /// A receiver that sees every later move of the log end offset (followers' fetches wait on
    /// it), and wakes when the partition goes offline, is removed or changes leadership.
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    /// The committed in-sync replicas as this broker knows them.
    pub fn isr(&self) -> Vec<i32> {
        self.replica_set_guard().isr().to_vec()
    }

    /// A consumer read at the high watermark, answered from the published offsets without the
    /// log (so without waiting for it: workers may ask): `None` unless this broker leads the
    /// partition, it is online and `fetch_offset` is the high watermark, the usual position of a
    /// consumer that has caught up.
    pub fn read_caught_up(
        &self,
        fetch_offset: i64,
        current_leader_epoch: i32,
    ) -> Option<ReadResult> {
        if self.role() != Role::Leader {
            return None;
        }
        // An epoch to check (or a leadership change in progress) takes the full path.
        if current_leader_epoch != -1 {
            let epoch = self.leader_epoch.try_read().ok()?;
            if *epoch != current_leader_epoch {
                return None;
            }
        }
        let published = *self.published.borrow();
        (fetch_offset == published.high_watermark).then(|| ReadResult {
            records: Bytes::new(),
            high_watermark: published.high_watermark,
            log_start_offset: published.log_start_offset,
        })
    }

    /// Appends records as the leader (blocking: call off the worker): validates and writes
    /// them with this broker's leader epoch, then advances the high watermark as far as the
    /// in-sync replicas allow.
    pub fn append_as_leader(
        &self,
        records: &Bytes,
        now_ms: i64,
    ) -> Result<Appended, AppendFailure> {
        let mut log_start_offset = -1;
        let result = (|| {
            let leader_epoch = self.epoch_guard();
            self.check_leader()?;
            let mut log = self.log_for_operation()?;
            log_start_offset = log.log_start_offset();
            let outcome = log
                .append(records, *leader_epoch, now_ms)
                .map_err(Failure::Storage)?;
            self.maybe_advance_high_watermark(&mut log);
            log_start_offset = log.log_start_offset();
            Ok(Appended {
                base_offset: outcome.base_offset,
                last_offset: outcome.last_offset,
                log_append_time: outcome.log_append_time,
                log_start_offset,
            })
        })();
        result.map_err(|failure| {
            let error = self.settle(failure, "append");
            if matches!(error, PartitionError::Offline(_)) {
                log_start_offset = -1;
            }
            AppendFailure {
                error,
                log_start_offset,
            }
        })
    }

    /// Reads whole batches from `fetch_offset` up to the log end, `max_bytes` at most (at least
    /// one batch when `min_one_message`): the leader's own loading of its log (the group
    /// coordinator); clients and followers read through [`Partition::fetch`] (blocking: call off
    /// the worker). Only the leader reads.
    pub fn read_to_log_end(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        min_one_message: bool,
    ) -> Result<ReadResult, PartitionError> {
        self.with_leader_log("read", |log| {
            let high_watermark = log.high_watermark();
            let limit = log.log_end_offset();
            let records = log.read(fetch_offset, max_bytes, limit, min_one_message)?;
            Ok(ReadResult {
                records,
                high_watermark,
                log_start_offset: log.log_start_offset(),
            })
        })
    }

    /// A Fetch of one partition by a consumer or a follower (blocking: call off the worker), with
    /// Kafka's checks in order: leadership, the fetcher's leader epoch, that a follower is a
    /// replica, then divergence: when the fetcher's last fetched epoch ends here before its fetch
    /// offset (or is newer than any epoch here), it is told where to truncate instead of getting
    /// records. A follower's fetch offset is its log end: recorded, it may move the high
    /// watermark, and the follower reads up to the log end where a consumer stops at the high
    /// watermark. Also returns, when a follower outside the ISR has caught up (and `eligible`
    /// says its broker is live), the ISR expansion to propose, already marked in flight.
    pub fn fetch(
        &self,
        position: FetchPosition,
        max_bytes: usize,
        min_one_message: bool,
        eligible: &dyn Fn(i32) -> bool,
    ) -> Result<(FetchOutcome, Option<IsrChange>), PartitionError> {
        let result = (|| {
            let leader_epoch = self.epoch_guard();
            self.check_leader()?;
            check_fetch_epoch(position.current_leader_epoch, *leader_epoch)?;
            if let Some(replica) = position.replica_id {
                if !self.replica_set_guard().is_replica(replica) {
                    return Err(Failure::NotAReplica(replica));
                }
            }
            let mut log = self.log_for_operation()?;
            if position.last_fetched_epoch >= 0 {
                let (epoch, end_offset) = log.end_offset_for_epoch(position.last_fetched_epoch);
                if epoch < 0 || end_offset < 0 {
                    return Err(Failure::Storage(StorageError::OffsetOutOfRange {
                        offset: position.fetch_offset,
                        start: log.log_start_offset(),
                        end: log.log_end_offset(),
                    }));
                }
                if epoch < position.last_fetched_epoch || end_offset < position.fetch_offset {
                    return Ok((
                        FetchOutcome::Diverging {
                            epoch,
                            end_offset,
                            high_watermark: log.high_watermark(),
                            log_start_offset: log.log_start_offset(),
                        },
                        None,
                    ));
                }
            }
            let mut isr_change = None;
            let limit = match position.replica_id {
                Some(replica) => {
                    let log_end = log.log_end_offset();
                    if (log.log_start_offset()..=log_end).contains(&position.fetch_offset) {
                        self.replica_set_guard().record_fetch(
                            replica,
                            position.fetch_offset,
                            log_end,
                            now_ms(),
                        );
                        self.maybe_advance_high_watermark(&mut log);
                        let mut replica_set = self.replica_set_guard();
                        isr_change = replica_set
                            .expansion_for(
                                replica,
                                log.high_watermark(),
                                eligible(replica),
                                now_ms(),
                            )
                            .filter(|change| replica_set.begin(change));
                    }
                    log_end
                }
                None => log.high_watermark(),
            };
            let records = log
                .read(position.fetch_offset, max_bytes, limit, min_one_message)
                .map_err(Failure::Storage)?;
            Ok((
                FetchOutcome::Records(ReadResult {
                    records,
                    high_watermark: log.high_watermark(),
                    log_start_offset: log.log_start_offset(),
                }),
                isr_change,
            ))
        })();
        result.map_err(|failure| self.settle(failure, "read"))
    }

    /// The ISR shrink to propose when in-sync followers have not caught up for `max_lag_ms`
    /// (already marked in flight); `None` unless this broker leads the partition.
    pub fn isr_shrink_due(&self, max_lag_ms: i64) -> Option<IsrChange> {
        let _leader_epoch = self.epoch_guard();
        self.check_leader().ok()?;
        let log = self.log_for_operation().ok()?;
        let mut replica_set = self.replica_set_guard();
        replica_set
            .shrink_for_lag(log.log_end_offset(), now_ms(), max_lag_ms)
            .filter(|change| replica_set.begin(change))
    }

    /// Settles an ISR change proposed by this leader: `committed` is the ISR and partition epoch
    /// the controller committed, `None` when it refused or could not be reached. The high
    /// watermark may move (a shrink stops waiting for the dropped followers).
    pub fn complete_isr_change(&self, committed: Option<(Vec<i32>, i32)>) {
        let _leader_epoch = self.epoch_guard();
        let Ok(mut log) = self.log_for_operation() else {
            return;
        };
        self.replica_set_guard()
            .complete(committed, now_ms(), ISR_CHANGE_RETRY_BACKOFF_MS);
        if self.check_leader().is_ok() {
            self.maybe_advance_high_watermark(&mut log);
        }
    }

    /// Where this replica's log stands, for its next fetch from the leader (no disk access);
    /// `None` unless it is an online follower.
    pub fn follower_position(&self) -> Option<FollowerPosition> {
        let leader_epoch = self.epoch_guard();
        if self.role() != Role::Follower || self.removed.load(Ordering::Acquire) {
            return None;
        }
        let log = self.log_for_operation().ok()?;
        Some(FollowerPosition {
            leader_epoch: *leader_epoch,
            fetch_offset: log.log_end_offset(),
            last_fetched_epoch: log.latest_epoch().unwrap_or(-1),
            log_start_offset: log.log_start_offset(),
        })
    }

    /// Appends the leader's batches (possibly none) exactly as they are, then takes the leader's
    /// high watermark (up to this log's end) and moves the log start up to the leader's where
    /// committed (blocking). Refused unless this broker still follows at `leader_epoch`.
    pub fn append_from_leader(
        &self,
        leader_epoch: i32,
        records: &Bytes,
        leader_high_watermark: i64,
        leader_log_start_offset: i64,
    ) -> Result<(), PartitionError> {
        self.leader_high_watermark
            .store(leader_high_watermark, Ordering::Release);
        self.with_follower_log(leader_epoch, "follower append", |log| {
            if !records.is_empty() {
                log.append_as_follower(records)?;
            }
            log.update_high_watermark(leader_high_watermark.min(log.log_end_offset()));
            let new_start = leader_log_start_offset.min(log.high_watermark());
            if new_start > log.log_start_offset() {
                log.delete_records_before(new_start)?;
            }
            Ok(())
        })
    }

    /// Truncates this follower's log where its leader says it diverges: at the end of `epoch` in
    /// the leader's log, or earlier where this log's own `epoch` ends (blocking).
    pub fn truncate_to_divergence(
        &self,
        leader_epoch: i32,
        epoch: i32,
        end_offset: i64,
    ) -> Result<(), PartitionError> {
        self.with_follower_log(leader_epoch, "truncation", |log| {
            let (local_epoch, local_end) = log.end_offset_for_epoch(epoch);
            let offset = if local_epoch < 0 || local_end < 0 {
                end_offset
            } else {
                end_offset.min(local_end)
            };
            if offset < log.log_end_offset() {
                tracing::info!(
                    partition = %self.name(),
                    offset,
                    log_end_offset = log.log_end_offset(),
                    diverging_epoch = epoch,
                    "truncating a follower's log where it diverges from the leader's"
                );
            }
            log.truncate_to(offset)
        })
    }

    /// After the leader answered OFFSET_OUT_OF_RANGE (blocking): a log ahead of the leader's
    /// high watermark comes back to it (divergence is then checked again); a log behind the
    /// leader's log start, or whose epochs the leader cannot place, restarts empty at the
    /// leader's log start.
    pub fn reset_out_of_range(
        &self,
        leader_epoch: i32,
        fetch_offset: i64,
        leader_high_watermark: i64,
        leader_log_start_offset: i64,
    ) -> Result<(), PartitionError> {
        self.with_follower_log(leader_epoch, "out-of-range reset", |log| {
            if fetch_offset > leader_high_watermark && leader_high_watermark >= 0 {
                tracing::warn!(partition = %self.name(), fetch_offset, leader_high_watermark, "follower log ahead of its leader: truncating to the leader's high watermark");
                log.truncate_to(leader_high_watermark)
            } else {
                tracing::warn!(partition = %self.name(), fetch_offset, leader_log_start_offset, "follower log out of the leader's range: restarting it at the leader's log start");
                log.truncate_fully_and_start_at(leader_log_start_offset.max(0))
            }
        })
    }

    /// Runs `operation` on the log of a follower still at `leader_epoch`, then publishes.
    fn with_follower_log(
        &self,
        leader_epoch: i32,
        what: &str,
        operation: impl FnOnce(&mut PartitionLog) -> Result<(), StorageError>,
    ) -> Result<(), PartitionError> {
        let result = (|| {
            let current_epoch = self.epoch_guard();
            if self.offline.load(Ordering::Acquire) {
                return Err(Failure::Offline);
            }
            if self.removed.load(Ordering::Acquire)
                || self.leader.load(Ordering::Acquire)
                || *current_epoch != leader_epoch
            {
                return Err(Failure::NotLeader);
            }
            let mut log = self.log_for_operation()?;
            operation(&mut log).map_err(Failure::Storage)?;
            self.publish(&log);
            Ok(())
        })();
        result.map_err(|failure| self.settle(failure, what))
    }

    /// OffsetForLeaderEpoch (KIP-101/KIP-320): the largest epoch at or below `epoch` in this
    /// leader's log and the offset where it ends (the log end for the latest epoch), after the
    /// fetcher's `current_leader_epoch` is checked like a fetch's. (-1, -1) when the log knows
    /// no such epoch.
    pub fn end_offset_for_leader_epoch(
        &self,
        current_leader_epoch: i32,
        epoch: i32,
    ) -> Result<(i32, i64), PartitionError> {
        let result = (|| {
            let leader_epoch = self.epoch_guard();
            self.check_leader()?;
            check_fetch_epoch(current_leader_epoch, *leader_epoch)?;
            let log = self.log_for_operation()?;
            Ok(log.end_offset_for_epoch(epoch))
        })();
        result.map_err(|failure| self.settle(failure, "OffsetForLeaderEpoch"))
    }

    /// DescribeLogDirs' view of this replica: its size in bytes and its lag, the committed
    /// records it still lacks (a follower: the leader's last reported high watermark minus this
    /// log's end; a leader: 0). `None` when offline.
    pub fn size_and_lag(&self) -> Option<(i64, i64)> {
        if self.role() == Role::Offline {
            return None;
        }
        let log = self.log_for_operation().ok()?;
        let size = i64::try_from(log.size_bytes()).unwrap_or(i64::MAX);
        let lag = match self.role() {
            Role::Follower => {
                (self.leader_high_watermark.load(Ordering::Acquire) - log.log_end_offset()).max(0)
            }
            _ => 0,
        };
        Some((size, lag))
    }

    /// The leader's log start and log end offsets (no disk access).
    pub fn offsets(&self) -> Result<LogOffsets, PartitionError> {
        self.with_leader_log("offsets", |log| {
            Ok(LogOffsets {
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
            })
        })
    }

    /// ListOffsets for one partition, as Kafka's `Partition.fetchOffsetForTimestamp`: the
    /// (timestamp, offset) for `timestamp`, one of [`special_timestamps`] or a time to search
    /// from (blocking: a search reads the disk). Answers found by timestamp at or after the high
    /// watermark are no answer: consumers cannot read there yet.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, PartitionError> {
        use special_timestamps::*;
        self.with_leader_log("offset lookup", |log| {
            let high_watermark = log.high_watermark();
            let committed =
                |found: Option<(i64, i64)>| found.filter(|&(_, offset)| offset < high_watermark);
            Ok(match timestamp {
                LATEST => Some((-1, high_watermark)),
                EARLIEST | EARLIEST_LOCAL => Some((-1, log.log_start_offset())),
                MAX_TIMESTAMP => committed(log.max_timestamp()),
                EARLIEST_PENDING_UPLOAD => None,
                timestamp => committed(
                    log.offset_for_timestamp(timestamp)?
                        .map(|(offset, found)| (found, offset)),
                ),
            })
        })
    }

    /// DeleteRecords: moves the log start offset up to `offset` (-1: the high watermark) and
    /// returns the new log start offset (blocking: deletes segment files).
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, PartitionError> {
        let result = (|| {
            let _leader_epoch = self.epoch_guard();
            self.check_leader()?;
            let mut log = self.log_for_operation()?;
            if !log.config().cleanup_policy_delete {
                return Err(Failure::NotAllowed);
            }
            let offset = if offset == -1 {
                log.high_watermark()
            } else {
                offset
            };
            let log_start_offset = log
                .delete_records_before(offset)
                .map_err(Failure::Storage)?;
            self.publish(&log);
            Ok(log_start_offset)
        })();
        result.map_err(|failure| self.settle(failure, "DeleteRecords"))
    }

    /// Periodic duty (blocking): time-based segment roll, `flush.ms` flush, checkpoints and, when
    /// `apply_retention`, retention. Failures are logged (and take the partition offline).
    pub fn run_housekeeping(&self, now_ms: i64, apply_retention: bool) {
        let result = (|| {
            let _leader_epoch = self.epoch_guard();
            let mut log = self.log_for_operation()?;
            log.maybe_roll_and_flush(now_ms).map_err(Failure::Storage)?;
            if apply_retention {
                let deleted = log.apply_retention(now_ms).map_err(Failure::Storage)?;
                self.publish(&log);
                if deleted > 0 {
                    tracing::info!(topic = %self.topic, partition = self.index, deleted, "retention deleted segments");
                }
            }
            Ok(())
        })();
        if let Err(failure) = result {
            self.settle(failure, "housekeeping");
        }
    }

    /// A compaction pass when `cleanup.policy` includes `compact` and the log is dirty enough
    /// (blocking). Appends go on while it cleans: only its planning and its swap lock the log.
    pub fn compact(&self, now_ms: i64) {
        let Some(log) = self.log.as_ref() else {
            return;
        };
        let runnable = !self.removed.load(Ordering::Acquire)
            && !self.offline.load(Ordering::Acquire)
            && lock(log).config().cleanup_policy_compact;
        if !runnable {
            return;
        }
        match compact_now(log, now_ms) {
            Ok(Some(stats)) => tracing::info!(
                topic = %self.topic,
                partition = self.index,
                records_removed = stats.records_removed,
                tombstones_removed = stats.tombstones_removed,
                bytes_before = stats.bytes_before,
                bytes_after = stats.bytes_after,
                "compacted"
            ),
            Ok(None) => {}
            Err(error) => {
                self.settle(Failure::Storage(error), "compaction");
            }
        }
    }

    /// Flushes the log to disk (clean shutdown; blocking).
    pub fn flush(&self) {
        let result = (|| {
            let _leader_epoch = self.epoch_guard();
            let mut log = self.log_for_operation()?;
            log.flush().map_err(Failure::Storage)
        })();
        if let Err(failure) = result {
            self.settle(failure, "flush");
        }
    }

    /// Applies what the metadata image says of this partition: leadership, leader epoch, ISR
    /// and the topic's effective log config. A new leadership (or a new leader epoch) starts a
    /// fresh view of the followers; a committed ISR change of the same leadership updates it and
    /// may move the high watermark.
    fn apply_image(&self, node_id: i32, image: &PartitionImage, config: LogConfig) {
        let mut leader_epoch = self
            .leader_epoch
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let leads = image.leader == node_id;
        let was_leader = self.leader.swap(leads, Ordering::AcqRel);
        let new_epoch = *leader_epoch != image.leader_epoch;
        *leader_epoch = image.leader_epoch;
        let Some(Ok(mut log)) = self.lock_log() else {
            return;
        };
        log.set_config(config);
        if new_epoch || leads != was_leader {
            if leads {
                if let Err(error) = log.assign_leader_epoch(image.leader_epoch) {
                    drop(log);
                    self.take_offline("becoming leader", &error);
                    return;
                }
            }
            *self.replica_set_guard() =
                ReplicaSet::new(node_id, image, log.log_end_offset(), now_ms());
            // Waiters (acks=all produces, followers' fetches) look again: they may now be
            // refused.
            self.published.send_modify(|_| {});
            self.log_end.send_modify(|_| {});
        } else {
            self.replica_set_guard().apply_committed(image, now_ms());
        }
        if leads {
            self.maybe_advance_high_watermark(&mut log);
        }
    }

    /// Stops serving: waits for operations in progress, then refuses every later one and wakes
    /// waiting requests, which find the partition gone.
    fn retire(&self) {
        let _leader_epoch = self
            .leader_epoch
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.removed.store(true, Ordering::Release);
        self.published.send_modify(|_| {});
        self.log_end.send_modify(|_| {});
    }

    /// Advances the high watermark to the smallest log end offset among the (maximal) in-sync
    /// replicas, and publishes the high watermark and log end when they moved. A leader's high
    /// watermark never moves back.
    fn maybe_advance_high_watermark(&self, log: &mut PartitionLog) {
        let log_end = log.log_end_offset();
        let isr_log_end = self.replica_set_guard().high_watermark_bound(log_end);
        if isr_log_end > log.high_watermark() {
            log.update_high_watermark(isr_log_end);
        }
        self.publish(log);
    }

    /// Publishes the log's high watermark and log start offset when either moved, and its log
    /// end.
    fn publish(&self, log: &PartitionLog) {
        let log_end = log.log_end_offset();
        self.log_end.send_if_modified(|published| {
            let moved = *published != log_end;
            *published = log_end;
            moved
        });
        let now = Published {
            high_watermark: log.high_watermark(),
            log_start_offset: log.log_start_offset(),
        };
        self.published.send_if_modified(|published| {
            let moved = *published != now;
            *published = now;
            moved
        });
    }

    /// Runs `operation` on the log of a leader, turning its storage errors into
    /// [`PartitionError`]s (an I/O error takes the partition offline).
    fn with_leader_log<T>(
        &self,
        what: &str,
        operation: impl FnOnce(&mut PartitionLog) -> Result<T, StorageError>,
    ) -> Result<T, PartitionError> {
        let result = (|| {
            let _leader_epoch = self.epoch_guard();
            self.check_leader()?;
            let mut log = self.log_for_operation()?;
            operation(&mut log).map_err(Failure::Storage)
        })();
        result.map_err(|failure| self.settle(failure, what))
    }

    fn replica_set_guard(&self) -> MutexGuard<'_, ReplicaSet> {
        self.replica_set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn epoch_guard(&self) -> RwLockReadGuard<'_, i32> {
        self.leader_epoch
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses unless this broker leads the partition and it is online. Called with the
    /// `leader_epoch` read lock held, so leadership cannot change until the operation ends.
    fn check_leader(&self) -> Result<(), Failure> {
        if self.offline.load(Ordering::Acquire) {
            return Err(Failure::Offline);
        }
        if self.removed.load(Ordering::Acquire) || !self.leader.load(Ordering::Acquire) {
            return Err(Failure::NotLeader);
        }
        Ok(())
    }

    /// The locked log, unless the partition is offline.
    fn log_for_operation(&self) -> Result<MutexGuard<'_, PartitionLog>, Failure> {
        match self.lock_log() {
            Some(Ok(log)) => Ok(log),
            _ => Err(Failure::Offline),
        }
    }

    /// The locked log: `None` when there is none, `Some(Err)` when the partition is offline.
    fn lock_log(&self) -> Option<Result<MutexGuard<'_, PartitionLog>, ()>> {
        let log = self.log.as_ref()?;
        if self.offline.load(Ordering::Acquire) {
            return Some(Err(()));
        }
        Some(Ok(lock(log)))
    }

    /// Turns a failed operation into the error its caller reports. Called without the replica
    /// lock held. An I/O error takes the partition offline (logged once, at ERROR) unless the
    /// partition was removed meanwhile (its directory is gone on purpose).
    fn settle(&self, failure: Failure, what: &str) -> PartitionError {
        match failure {
            Failure::Offline => PartitionError::Offline(self.name()),
            Failure::NotLeader => PartitionError::NotLeader(self.name()),
            Failure::NotAllowed => PartitionError::DeleteNotAllowed(self.name()),
            Failure::FencedEpoch(requested, current) => {
                PartitionError::FencedLeaderEpoch(self.name(), requested, current)
            }
            Failure::UnknownEpoch(requested, current) => {
                PartitionError::UnknownLeaderEpoch(self.name(), requested, current)
            }
            Failure::NotAReplica(replica) => PartitionError::NotAReplica(self.name(), replica),
            Failure::Storage(error @ StorageError::Io { .. }) => {
                if self.removed.load(Ordering::Acquire) {
                    tracing::debug!(partition = %self.name(), %error, "{what} failed on a deleted partition");
                    return PartitionError::NotLeader(self.name());
                }
                self.take_offline(what, &error);
                PartitionError::Offline(self.name())
            }
            Failure::Storage(error) => PartitionError::Refused(error),
        }
    }

    /// Marks the partition offline after a storage failure: one ERROR line, waiters woken.
    fn take_offline(&self, what: &str, error: &StorageError) {
        if !self.offline.swap(true, Ordering::AcqRel) {
            tracing::error!(
                partition = %self.name(),
                %error,
                "{what} failed: partition taken offline (KAFKA_STORAGE_ERROR until restart)"
            );
            self.published.send_modify(|_| {});
            self.log_end.send_modify(|_| {});
        }
    }

    /// How many requests are subscribed to the high watermark (tests: to know a fetch waits).
    #[cfg(test)]
    pub(crate) fn waiters(&self) -> usize {
        self.published.receiver_count()
    }

    /// The log, locked, for tests that set up states the owner never produces.
    #[cfg(test)]
    pub(crate) fn log_for_test(&self) -> MutexGuard<'_, PartitionLog> {
        lock(self.log.as_ref().expect("an online partition"))
    }
}

/// Runs blocking disk work from a request handler without holding up any other task. On a worker
/// of tokio's multi-threaded runtime, `block_in_place` hands the worker's tasks to another thread
/// before `work` runs; anywhere else (already on the blocking pool, or a current-thread runtime
/// in unit tests) `work` simply runs. See the module doc for why not `spawn_blocking`.
pub fn off_worker<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Why an operation stopped, before it is settled into a [`PartitionError`].
enum Failure {
    Offline,
    NotLeader,
    NotAllowed,
    /// (the request's leader epoch, this broker's)
    FencedEpoch(i32, i32),
    UnknownEpoch(i32, i32),
    NotAReplica(i32),
    Storage(StorageError),
}

/// Kafka's check of the leader epoch a fetcher names (-1: none named).
fn check_fetch_epoch(requested: i32, current: i32) -> Result<(), Failure> {
    match requested {
        -1 => Ok(()),
        requested if requested < current => Err(Failure::FencedEpoch(requested, current)),
        requested if requested > current => Err(Failure::UnknownEpoch(requested, current)),
        _ => Ok(()),
    }
}

/// Locks a log. A poisoned lock (a panic while appending) is recovered: the log's own invariants
/// are re-established by its next append or by recovery at restart.
fn lock(log: &Mutex<PartitionLog>) -> MutexGuard<'_, PartitionLog> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

type PartitionKey = (String, i32);

/// All partitions hosted here, by topic name and index.
pub struct PartitionRegistry {
    log_dir: PathBuf,
    /// The broker's configuration: its node id and `server.properties`, the static layer of each
    /// log's config.
    config: BrokerConfig,
    /// Held only to look up, insert or remove owners, never across disk I/O.
    partitions: RwLock<HashMap<PartitionKey, Arc<Partition>>>,
    /// The metadata image version the registry last synced with (`u64::MAX` before the first);
    /// also serializes syncs.
    synced_version: Mutex<u64>,
}

impl PartitionRegistry {
    pub fn new(log_dir: &Path, config: &BrokerConfig) -> Self {
        Self {
            log_dir: log_dir.to_path_buf(),
            config: config.clone(),
            partitions: RwLock::new(HashMap::new()),
            synced_version: Mutex::new(u64::MAX),
        }
    }

    pub fn get(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        partitions.get(&(topic.to_string(), index)).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        partitions.values().cloned().collect()
    }

    /// The indexes of `topic`'s partitions that are hosted here and offline, in order.
    pub fn offline_partitions(&self, topic: &str) -> Vec<i32> {
        let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        let mut offline: Vec<i32> = partitions
            .values()
            .filter(|p| p.topic == topic && p.role() == Role::Offline)
            .map(|p| p.index)
            .collect();
        offline.sort_unstable();
        offline
    }

    /// The log configuration of a topic: each topic key's effective value as
    /// [`strom_config::ConfigLayers`] resolves it (static broker defaults < dynamic cluster-wide
    /// broker configs < this broker's dynamic configs < the topic's overrides), the same values
    /// DescribeConfigs reports. A value the log cannot use (validated on write, so only from a
    /// damaged metadata log) is logged and its key keeps its default.
    pub fn topic_log_config(&self, image: &MetadataImage, topic: &str) -> LogConfig {
        let layers = self.config.config_layers(image, Some(topic));
        let mut config = LogConfig::default();
        for def in strom_config::topic_keys() {
            let Some((value, _)) = layers.topic_value(def.name) else {
                continue;
            };
            if let Err(error) = config.set(def.name, &value) {
                tracing::warn!(topic, %error, "ignoring an invalid topic config value");
            }
        }
        config
    }

    /// Opens logs for partitions that appeared, applies changed leadership, leader epochs and
    /// configs, and deletes the logs of topics that are gone (blocking: run on the blocking
    /// pool). Idempotent; cheap when the image has not changed. The registry's map is locked only
    /// to insert and remove owners, so lookups never wait for the disk.
    pub fn sync_with_image(&self, image: &MetadataImage) {
        let mut synced = self
            .synced_version
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *synced == image.version {
            return;
        }
        let node_id = self.config.node_id;

        let mut wanted: HashMap<PartitionKey, ([u8; 16], &PartitionImage)> = HashMap::new();
        // Only the partitions with a replica on this broker are hosted here.
        for topic in image.topics.values() {
            for (&index, partition) in &topic.partitions {
                if partition.replicas.contains(&self.config.node_id) {
                    wanted.insert((topic.name.clone(), index), (topic.id, partition));
                }
            }
        }

        let removed: Vec<Arc<Partition>> = {
            let mut partitions = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<PartitionKey> = partitions
                .iter()
                .filter(|(key, partition)| {
                    wanted.get(*key).map(|(id, _)| id) != Some(&partition.topic_id)
                })
                .map(|(key, _)| key.clone())
                .collect();
            gone.iter()
                .filter_map(|key| partitions.remove(key))
                .collect()
        };
        for partition in removed {
            partition.retire();
            self.delete_partition_dir(&partition);
        }

        for ((topic, index), (topic_id, partition_image)) in wanted {
            let config = self.topic_log_config(image, &topic);
            if let Some(existing) = self.get(&topic, index) {
                existing.apply_image(node_id, partition_image, config);
                continue;
            }
            let log = self.open_log(&topic, index, &topic_id, config);
            let partition = Partition::new(
                topic.clone(),
                index,
                topic_id,
                log,
                node_id,
                partition_image,
            );
            self.partitions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert((topic, index), Arc::new(partition));
        }
        *synced = image.version;
    }

    /// Claims the partition's directory and opens its log; `None` (logged at ERROR) when the
    /// storage fails, and the partition is then registered offline.
    fn open_log(
        &self,
        topic: &str,
        index: i32,
        topic_id: &[u8; 16],
        config: LogConfig,
    ) -> Option<PartitionLog> {
        let dir = self.partition_dir(topic, index);
        if let Err(error) = claim_partition_dir(&dir, topic_id) {
            tracing::error!(
                dir = %dir.display(),
                %error,
                "could not prepare partition directory: partition offline (KAFKA_STORAGE_ERROR)"
            );
            return None;
        }
        match PartitionLog::open(&dir, config) {
            Ok(log) => Some(log),
            Err(error) => {
                tracing::error!(
                    dir = %dir.display(),
                    %error,
                    "could not open partition log: partition offline (KAFKA_STORAGE_ERROR)"
                );
                None
            }
        }
    }

    /// Renames a removed partition's directory to `<name>.<id>-delete`, then deletes it.
    fn delete_partition_dir(&self, partition: &Partition) {
        let dir = self.partition_dir(&partition.topic, partition.index);
        let doomed = dir.with_file_name(format!(
            "{}.{}-delete",
            partition.name(),
            base64url(&strom_metadata::meta_properties::random_uuid())
        ));
        let target = match std::fs::rename(&dir, &doomed) {
            Ok(()) => &doomed,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "could not rename a deleted partition's directory");
                &dir
            }
        };
        if let Err(error) = std::fs::remove_dir_all(target) {
            tracing::warn!(dir = %target.display(), %error, "could not delete partition directory");
        } else {
            tracing::info!(topic = %partition.topic, partition = partition.index, "deleted partition log");
        }
    }

    /// Renames aside every partition directory in the log directory that `image` does not place
    /// on this broker: logs of topics deleted (or moved away) while this broker was down, or of
    /// lost metadata. Called once the broker has caught up with the controller's metadata (it
    /// was unfenced), never on the image replayed at start: a node of a Raft quorum may open with
    /// an image that lags the committed log, and its logs must not be set aside for that.
    pub fn set_aside_unknown_dirs(&self, image: &MetadataImage) {
        let wanted: std::collections::HashSet<PartitionKey> = image
            .topics
            .values()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .filter(|(_, p)| p.replicas.contains(&self.config.node_id))
                    .map(|(index, _)| (topic.name.clone(), *index))
            })
            .collect();
        let Ok(entries) = std::fs::read_dir(&self.log_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some((topic, index)) = parse_partition_dir_name(&name) else {
                continue;
            };
            if !path.is_dir() || wanted.contains(&(topic.to_owned(), index)) {
                continue;
            }
            set_aside(&path, "the metadata has no such partition");
        }
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.log_dir.join(format!("{topic}-{index}"))
    }

    /// Runs time-based segment rolls, `flush.ms` flushes and retention on every partition
    /// (blocking).
    pub fn run_housekeeping(&self, now_ms: i64, apply_retention: bool) {
        for partition in self.all() {
            partition.run_housekeeping(now_ms, apply_retention);
        }
    }

    /// Runs a compaction pass on every partition whose `cleanup.policy` includes `compact` and
    /// which is dirty enough (blocking).
    pub fn run_compaction(&self, now_ms: i64) {
        for partition in self.all() {
            partition.compact(now_ms);
        }
    }

    /// Flushes every log to disk (clean shutdown; blocking).
    pub fn flush_all(&self) {
        for partition in self.all() {
            partition.flush();
        }
    }
}

/// Kafka's per-partition file naming the topic id the directory belongs to.
const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// `<topic>-<partition>` directory names (not the metadata log's, nor `-stray`/`-delete` ones).
fn parse_partition_dir_name(name: &str) -> Option<(&str, i32)> {
    let (topic, index) = name.rsplit_once('-')?;
    let index: i32 = index.parse().ok()?;
    (!topic.is_empty() && index >= 0 && name != strom_metadata::log::METADATA_LOG_DIR_NAME)
        .then_some((topic, index))
}

/// Makes `dir` the directory of topic `topic_id`: a directory of another topic id is set aside
/// first; a new or legacy directory gets the `partition.metadata` file.
fn claim_partition_dir(dir: &Path, topic_id: &[u8; 16]) -> std::io::Result<()> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let expected = base64url(topic_id);
    match std::fs::read_to_string(&path) {
        Ok(contents) => {
            let recorded = contents
                .lines()
                .find_map(|line| line.strip_prefix("topic_id:"))
                .map(str::trim);
            if recorded == Some(expected.as_str()) {
                return Ok(());
            }
            set_aside(
                dir,
                &format!(
                    "it belongs to topic id {} but the metadata names {expected}",
                    recorded.unwrap_or("(none)")
                ),
            );
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if dir.is_dir() {
                tracing::warn!(
                    dir = %dir.display(),
                    topic_id = %expected,
                    "adopting a partition directory that has no {PARTITION_METADATA_FILE}"
                );
            }
        }
        Err(error) => return Err(error),
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{PARTITION_METADATA_FILE}.tmp"));
    std::fs::write(&tmp, format!("version: 0\ntopic_id: {expected}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Renames a partition directory that must not be used to `<name>.<random>-stray`, as Kafka does.
fn set_aside(dir: &Path, why: &str) {
    let stray_name = format!(
        "{}.{}-stray",
        dir.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("partition"),
        base64url(&strom_metadata::meta_properties::random_uuid())
    );
    let stray = dir.with_file_name(stray_name);
    match std::fs::rename(dir, &stray) {
        Ok(()) => tracing::warn!(
            dir = %dir.display(),
            moved_to = %stray.display(),
            "set aside a partition directory: {why}"
        ),
        Err(error) => tracing::error!(
            dir = %dir.display(),
            %error,
            "could not set aside a partition directory ({why})"
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use strom_metadata::{PartitionImage, TopicImage};

    use super::*;

    /// An image with topic `name` (id `id`) of one partition, led by the default config's node.
    pub(crate) fn image_with_topic(name: &str, id: [u8; 16]) -> MetadataImage {
        let mut image = MetadataImage::empty("cluster".into());
        image.topics.insert(
            name.into(),
            Arc::new(TopicImage {
                name: name.into(),
                id,
                // One replica, on this (default-configured) broker, which leads it.
                partitions: BTreeMap::from([(
                    0,
                    PartitionImage {
                        replicas: vec![BrokerConfig::default().node_id],
                        leader: BrokerConfig::default().node_id,
                        ..PartitionImage::default()
                    },
                )]),
                configs: BTreeMap::new(),
            }),
        );
        image.topic_names_by_id.insert(id, name.into());
        image.version = 1;
        image
    }

    fn strays(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with("-stray"))
            .collect()
    }

    pub(crate) fn one_record() -> Bytes {
        let mut builder = strom_protocol::records::BatchBuilder::new(
            0,
            strom_protocol::records::Compression::None,
            0,
        );
        builder.push(0, None, Some(Bytes::from_static(b"v")), Vec::new());
        builder.build()
    }

    #[test]
    fn an_append_publishes_the_high_watermark_of_its_own_partition_only() {
        let dir = tempfile::tempdir().unwrap();
        let registry = PartitionRegistry::new(dir.path(), &BrokerConfig::default());
        let mut image = image_with_topic("a", [1; 16]);
        let other = image_with_topic("b", [2; 16]);
        image.topics.extend(other.topics);
        registry.sync_with_image(&image);
        let a = registry.get("a", 0).unwrap();
        let b = registry.get("b", 0).unwrap();
        assert_eq!((a.role(), b.role()), (Role::Leader, Role::Leader));
        let mut a_watch = a.subscribe();
        let b_watch = b.subscribe();

        let appended = a.append_as_leader(&one_record(), 0).unwrap();
        assert_eq!(appended.last_offset, 0);
        assert!(a_watch.has_changed().unwrap());
        assert_eq!(a_watch.borrow_and_update().high_watermark, 1);
        assert!(
            !b_watch.has_changed().unwrap(),
            "b was woken by an append to a"
        );
        assert_eq!(b.subscribe().borrow().high_watermark, 0);
    }

    #[test]
    fn an_io_error_takes_the_partition_offline_and_wakes_its_waiters() {
        let dir = tempfile::tempdir().unwrap();
        let registry = PartitionRegistry::new(dir.path(), &BrokerConfig::default());
        registry.sync_with_image(&image_with_topic("t", [1; 16]));
        let partition = registry.get("t", 0).unwrap();
        partition.append_as_leader(&one_record(), 0).unwrap();
        let mut watch = partition.subscribe();
        watch.borrow_and_update();

        // The directory vanishes under the log: its checkpoints cannot be written.
        std::fs::remove_dir_all(dir.path().join("t-0")).unwrap();
        partition.flush();
        assert_eq!(partition.role(), Role::Offline);
        assert!(watch.has_changed().unwrap(), "waiters must look again");
        assert_eq!(registry.offline_partitions("t"), [0]);

        // Every later request is refused with KAFKA_STORAGE_ERROR, without touching the disk.
        let failure = partition.append_as_leader(&one_record(), 0).unwrap_err();
        assert_eq!(
            failure.error.error_code(),
            ErrorCode::KafkaStorageError.code()
        );
        assert_eq!(failure.log_start_offset, -1);
        let read = partition.read_to_log_end(0, 1024, true);
        assert_eq!(
            read.unwrap_err().error_code(),
            ErrorCode::KafkaStorageError.code()
        );
        assert_eq!(
            partition
                .offset_for_timestamp(special_timestamps::LATEST)
                .unwrap_err()
                .error_code(),
            ErrorCode::KafkaStorageError.code()
        );
    }

    #[test]
    fn a_partition_whose_directory_cannot_be_created_is_registered_offline() {
        let dir = tempfile::tempdir().unwrap();
        // The log directory is a file: no partition directory can be made in it.
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"").unwrap();
        let registry = PartitionRegistry::new(&not_a_dir, &BrokerConfig::default());
        registry.sync_with_image(&image_with_topic("t", [1; 16]));
        let partition = registry.get("t", 0).expect("registered, offline");
        assert_eq!(partition.role(), Role::Offline);
        assert_eq!(registry.offline_partitions("t"), [0]);
        let failure = partition.append_as_leader(&one_record(), 0).unwrap_err();
        assert_eq!(
            failure.error.error_code(),
            ErrorCode::KafkaStorageError.code()
        );
    }

    #[test]
    fn a_deleted_partition_stops_serving_and_wakes_its_waiters() {
        let dir = tempfile::tempdir().unwrap();
        let registry = PartitionRegistry::new(dir.path(), &BrokerConfig::default());
        registry.sync_with_image(&image_with_topic("t", [1; 16]));
        let partition = registry.get("t", 0).unwrap();
        let mut watch = partition.subscribe();
        watch.borrow_and_update();
        let mut empty = MetadataImage::empty("cluster".into());
        empty.version = 2;
        registry.sync_with_image(&empty);
        assert!(registry.get("t", 0).is_none());
        assert!(watch.has_changed().unwrap());
        let failure = partition.append_as_leader(&one_record(), 0).unwrap_err();
        assert_eq!(
            failure.error.error_code(),
            ErrorCode::NotLeaderOrFollower.code()
        );
        assert!(!dir.path().join("t-0").exists());
        // Not a storage failure: nothing taken offline.
        assert_ne!(partition.role(), Role::Offline);
    }

    #[test]
    fn a_directory_of_another_topic_incarnation_is_set_aside_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let old = PartitionRegistry::new(dir.path(), &BrokerConfig::default());
        old.sync_with_image(&image_with_topic("t", [1; 16]));
        let partition = old.get("t", 0).unwrap();
        let mut builder = strom_protocol::records::BatchBuilder::new(
            0,
            strom_protocol::records::Compression::None,
            0,
        );
        builder.push(0, None, Some(bytes::Bytes::from_static(b"old")), Vec::new());
        let batch = builder.build();
        partition.append_as_leader(&batch, 0).unwrap();
        drop(partition);
        drop(old);

        // The metadata now names another topic "t" (a new id): the old data must not reappear.
        let new = PartitionRegistry::new(dir.path(), &BrokerConfig::default());
        new.sync_with_image(&image_with_topic("t", [2; 16]));
        assert_eq!(
            new.get("t", 0).unwrap().subscribe().borrow().high_watermark,
            0
        );
        assert_eq!(strays(dir.path()).len(), 1);

        // A directory the metadata does not know at all is set aside once caught up.
        std::fs::create_dir_all(dir.path().join("unknown-0")).unwrap();
        let restarted = PartitionRegistry::new(dir.path(), &BrokerConfig::default());
        let image = image_with_topic("t", [2; 16]);
        restarted.sync_with_image(&image);
        assert!(
            dir.path().join("unknown-0").exists(),
            "not before catching up"
        );
        restarted.set_aside_unknown_dirs(&image);
        assert!(!dir.path().join("unknown-0").exists());
        assert_eq!(strays(dir.path()).len(), 2);
        assert!(dir
            .path()
            .join("t-0")
            .join(PARTITION_METADATA_FILE)
            .exists());
    }

    #[test]
    fn log_config_layers_static_dynamic_and_topic_values() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (config, _) = BrokerConfig::from_properties_str(
            "log.retention.minutes=5\nlog.segment.bytes=4096\nmessage.max.bytes=2000",
        )
        .expect("valid properties");
        let mut image = image_with_topic("t", [1; 16]);
        if let Some(topic) = image.topics.get_mut("t") {
            Arc::make_mut(topic)
                .configs
                .insert("flush.messages".into(), "1".into());
        }
        let pairs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        image.broker_configs.insert(
            None,
            pairs(&[
                ("log.cleanup.policy", "compact"),
                ("log.segment.bytes", "16384"),
                ("message.max.bytes", "3000"),
            ]),
        );
        image.broker_configs.insert(
            Some(config.node_id),
            pairs(&[("log.segment.bytes", "8192")]),
        );

        let registry = PartitionRegistry::new(dir.path(), &config);
        let log = registry.topic_log_config(&image, "t");
        assert_eq!(log.retention_ms, 300_000, "static log.retention.minutes");
        assert_eq!(log.segment_bytes, 8192, "per-broker beats cluster default");
        assert_eq!(log.max_message_bytes, 3000, "cluster default beats static");
        assert!(log.cleanup_policy_compact && !log.cleanup_policy_delete);
        assert_eq!(log.flush_messages, 1, "topic override");
        let other = registry.topic_log_config(&image, "not-a-topic");
        assert_eq!(other.flush_messages, LogConfig::default().flush_messages);
    }
}
