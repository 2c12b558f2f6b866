//! openraft's log storage over the metadata log ([`MetadataLog`]) and the quorum-state file
//! ([`QuorumState`]): entries and votes are fsynced before openraft is told they are stored.
//!
//! Disk work (append, truncate, purge, vote) runs on tokio's blocking pool through
//! `spawn_blocking`: openraft awaits each storage call before the next, so the hop costs a few
//! microseconds against a millisecond fsync, works on any runtime (`block_in_place` panics on a
//! current-thread runtime, as `#[tokio::test]` uses), and never stalls an async worker. The log
//! sits behind a tokio mutex, held across the blocking write, so replication tasks reading entries
//! (served from the log's in-memory copy) wait without blocking a worker either.
//!
//! The last purged log id is what openraft needs to know about entries no longer in the log. It is
//! not stored on its own: at open it is the last entry the newest snapshot covers, and entries the
//! log still holds before that point are treated as purged (they go at the next purge).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError};
use tokio::sync::{watch, Mutex};

use super::convert::{self, log_entry, raft_entry};
use super::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::log::{LogEntry, MetadataLog};
use crate::quorum_state::QuorumState;
use crate::snapshot::SnapshotId;

/// The Raft log and vote of one node.
pub(crate) struct LogStore {
    dir: PathBuf,
    log: Arc<Mutex<MetadataLog>>,
    quorum_state: QuorumState,
    last_purged: Option<LogId>,
    /// The newest snapshot on disk; a purge waits until one covers what it drops.
    durable_snapshot: watch::Receiver<Option<SnapshotId>>,
}

/// Reads entries for replication, concurrently with the store's writes.
#[derive(Clone)]
pub(crate) struct LogReader {
    log: Arc<Mutex<MetadataLog>>,
}

fn read_error(error: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_logs(AnyError::error(error)).into()
}

fn write_error(error: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_logs(AnyError::error(error)).into()
}

impl LogStore {
    /// A store over `log` (opened and made consistent with the newest snapshot by the caller),
    /// whose entries up to `last_purged` are covered by a snapshot.
    pub(crate) fn new(
        dir: PathBuf,
        log: MetadataLog,
        quorum_state: QuorumState,
        last_purged: Option<LogId>,
        durable_snapshot: watch::Receiver<Option<SnapshotId>>,
    ) -> Self {
        Self {
            dir,
            log: Arc::new(Mutex::new(log)),
            quorum_state,
            last_purged,
            durable_snapshot,
        }
    }

    /// Runs `write` on the log on the blocking pool.
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut MetadataLog) -> Result<T, crate::log::LogError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let mut log = self.log.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || write(&mut log))
            .await
            .map_err(write_error)?
            .map_err(write_error)
    }
}

/// Entries of `log` with indexes in `range`, as openraft entries.
async fn read_entries<RB: RangeBounds<u64>>(
    log: &Mutex<MetadataLog>,
    range: RB,
) -> Result<Vec<Entry>, StorageError> {
    let start = match range.start_bound() {
        Bound::Included(start) => *start,
        Bound::Excluded(start) => start.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(end) => end.saturating_add(1),
        Bound::Excluded(end) => *end,
        Bound::Unbounded => u64::MAX,
    };
    let start = i64::try_from(start).unwrap_or(i64::MAX);
    let end = i64::try_from(end).unwrap_or(i64::MAX);
    let log = log.lock().await;
    log.entries_from(start)
        .take_while(|entry| entry.offset < end)
        .map(raft_entry)
        .collect::<Result<_, _>>()
        .map_err(read_error)
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        read_entries(&self.log, range).await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        read_entries(&self.log, range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let log = self.log.lock().await;
        let last_entry = log
            .entry(log.next_offset() - 1)
            .map(|entry| convert::log_id(entry.epoch, entry.offset));
        Ok(LogState {
            last_purged_log_id: self.last_purged,
            last_log_id: last_entry.max(self.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            log: self.log.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let state = convert::quorum_state(vote, self.quorum_state.data_version)
            .map_err(|e| StorageIOError::write_vote(AnyError::error(e)))?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || state.store(&dir))
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::error(e)))?
            .map_err(|e| StorageIOError::write_vote(AnyError::error(e)))?;
        self.quorum_state = state;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(convert::vote(&self.quorum_state))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries
            .into_iter()
            .map(|entry| log_entry(&entry))
            .collect::<Result<Vec<LogEntry>, _>>()
            .map_err(write_error)?;
        self.write(move |log| log.append_entries(entries)).await?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let offset = convert::offset(log_id.index).map_err(write_error)?;
        self.write(move |log| log.truncate_from(offset)).await
    }

    /// Drops the entries up to `log_id` once a snapshot on disk covers them. The log drops whole
    /// segments only, and it is rolled at each purge, so a segment goes at the first purge that
    /// covers it wholly: at most the entries since the previous purge stay on disk beyond
    /// `log_id` (openraft no longer reads them). A log wholly covered — a snapshot from the leader
    /// replaced it — restarts empty after `log_id`.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let offset = convert::offset(log_id.index).map_err(write_error)?;
        let epoch = convert::epoch(log_id.leader_id.term).map_err(write_error)?;
        // openraft purges right after handing a received snapshot to the state machine, possibly
        // before the state machine has stored it; dropping the log first would leave a window
        // where a crash loses both.
        self.durable_snapshot
            .wait_for(|snapshot| snapshot.is_some_and(|s| s.end_offset > offset))
            .await
            .map_err(|_| write_error("the state machine stopped before storing the snapshot"))?;
        self.write(move |log| {
            if offset + 1 >= log.next_offset() {
                log.reset(offset + 1, epoch)
            } else {
                log.roll()?;
                log.purge_through(offset).map(drop)
            }
        })
        .await?;
        self.last_purged = Some(log_id);
        Ok(())
    }
}
