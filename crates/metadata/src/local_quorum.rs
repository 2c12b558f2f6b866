//! The single-node quorum: this node is the only voter, so an entry is committed as soon as it is
//! fsynced to the local metadata log. It elects itself at start (a new epoch, recorded in the
//! quorum-state file before anything is written in it, as a Raft voter would), replays the newest
//! snapshot plus the log after it into the [`MetadataState`], and takes a snapshot and purges the
//! log each time `snapshot_interval_bytes` of entries have been written since the last one (Kafka's
//! `metadata.log.max.record.bytes.between.snapshots`).
//!
//! Disk work (append, fsync, snapshot) runs on tokio's blocking pool, never on an async worker.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::error::MetadataError;
use crate::log::{LogEntry, MetadataLog};
use crate::meta_properties::load_or_create_meta_properties;
use crate::quorum::{now_ms, ProposeFuture, Quorum, QuorumError, QuorumStatus, ReplicaStatus};
use crate::quorum_state::QuorumState;
use crate::records::serialize_record;
use crate::snapshot::{self, SnapshotId};
use crate::state::MetadataState;

/// Kafka's default `metadata.log.max.record.bytes.between.snapshots` (20 MiB).
pub const DEFAULT_SNAPSHOT_INTERVAL_BYTES: u64 = 20 * 1024 * 1024;

/// A quorum of one voter over the local metadata log.
#[derive(Debug)]
pub struct LocalQuorum {
    node_id: i32,
    inner: Arc<Mutex<Inner>>,
    state: Arc<MetadataState>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    log: MetadataLog,
    epoch: i32,
    snapshot_interval_bytes: u64,
    bytes_since_snapshot: u64,
}

impl LocalQuorum {
    /// Opens the metadata directory `dir` (by convention `<log.dir>/__cluster_metadata-0`) and
    /// rebuilds the metadata state from it. A directory without `meta.properties` starts a new
    /// cluster, with `cluster_id_if_new` or a random Kafka-style cluster id.
    pub fn open(
        dir: &Path,
        node_id: i32,
        cluster_id_if_new: Option<String>,
        snapshot_interval_bytes: u64,
    ) -> Result<(Self, Arc<MetadataState>), MetadataError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| MetadataError::storage(&format!("creating {}", dir.display()), e))?;
        let cluster_id = load_or_create_meta_properties(dir, node_id, cluster_id_if_new)?;
        let state = Arc::new(MetadataState::new(cluster_id));

        let snapshot = snapshot::latest_snapshot(dir)
            .map_err(|e| MetadataError::storage("reading metadata snapshots", e))?;
        let snapshot_end = snapshot.as_ref().map_or(0, |(id, _)| id.end_offset);
        if let Some((id, records)) = &snapshot {
            state
                .install_snapshot(*id, records)
                .map_err(|e| MetadataError::storage("loading metadata snapshot", e))?;
        }
        let log = MetadataLog::open_after_snapshot(dir, snapshot.as_ref().map(|(id, _)| *id))
            .map_err(|e| MetadataError::storage("opening the metadata log", e))?;
        for entry in log.entries_from(snapshot_end) {
            state
                .apply(entry)
                .map_err(|e| MetadataError::storage("replaying the metadata log", e))?;
        }

        let mut vote = QuorumState::load(dir)
            .map_err(|e| MetadataError::storage("reading the quorum state", e))?;
        let epoch = vote
            .epoch
            .max(log.last_epoch())
            .max(snapshot.as_ref().map_or(0, |(id, _)| id.epoch))
            + 1;
        vote = QuorumState {
            epoch,
            voted_id: node_id,
            leader_id: node_id,
            ..vote
        };
        vote.store(dir)
            .map_err(|e| MetadataError::storage("writing the quorum state", e))?;
        tracing::info!(
            node_id,
            epoch,
            "elected leader of the single-voter metadata quorum"
        );

        let bytes_since_snapshot = log.size_bytes();
        let inner = Inner {
            dir: dir.to_path_buf(),
            log,
            epoch,
            snapshot_interval_bytes: snapshot_interval_bytes.max(1),
            bytes_since_snapshot,
        };
        let quorum = Self {
            node_id,
            inner: Arc::new(Mutex::new(inner)),
            state: state.clone(),
        };
        Ok((quorum, state))
    }

    /// Takes a snapshot of the current image now and purges the log behind it.
    pub async fn snapshot_now(&self) -> Result<Option<SnapshotId>, QuorumError> {
        let inner = self.inner.clone();
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.take_snapshot(&state)
        })
        .await
        .map_err(|_| QuorumError::ShuttingDown)?
    }
}

impl Inner {
    /// Appends, fsyncs, applies; snapshots when enough has been written since the last one.
    fn append_and_apply(
        &mut self,
        records: Vec<Bytes>,
        state: &MetadataState,
    ) -> Result<i64, QuorumError> {
        let entry = LogEntry {
            offset: self.log.next_offset(),
            epoch: self.epoch,
            records,
        };
        let size = entry.encoded_len() as u64;
        self.log
            .append_entry(entry.clone())
            .map_err(|e| QuorumError::Storage(e.to_string()))?;
        if let Err(error) = state.apply(&entry) {
            tracing::error!(%error, "committed metadata entry does not apply to the image");
        }
        self.bytes_since_snapshot += size;
        if self.bytes_since_snapshot >= self.snapshot_interval_bytes {
            if let Err(error) = self.take_snapshot(state) {
                tracing::warn!(%error, "cannot take a metadata snapshot; will retry later");
            }
        }
        Ok(entry.offset)
    }

    fn take_snapshot(&mut self, state: &MetadataState) -> Result<Option<SnapshotId>, QuorumError> {
        let storage = |e: &dyn std::fmt::Display| QuorumError::Storage(e.to_string());
        let image = state.image();
        if image.last_offset < 0 {
            return Ok(None);
        }
        let Some(epoch) = self.log.entry(image.last_offset).map(|e| e.epoch) else {
            return Ok(None);
        };
        let id = SnapshotId {
            end_offset: image.last_offset + 1,
            epoch,
        };
        let records = snapshot::image_records(&image)
            .iter()
            .map(serialize_record)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| storage(&e))?;
        let size = snapshot::write_snapshot(&self.dir, id, &records).map_err(|e| storage(&e))?;
        self.log.roll().map_err(|e| storage(&e))?;
        let purged = self
            .log
            .purge_through(image.last_offset)
            .map_err(|e| storage(&e))?;
        snapshot::delete_snapshots_before(&self.dir, id).map_err(|e| storage(&e))?;
        self.bytes_since_snapshot = self.log.size_bytes();
        tracing::info!(
            end_offset = id.end_offset,
            epoch,
            bytes = size,
            purged_entries = purged,
            "wrote metadata snapshot"
        );
        Ok(Some(id))
    }
}

impl Quorum for LocalQuorum {
    fn propose(&self, records: Vec<Bytes>) -> ProposeFuture<'_> {
        let inner = self.inner.clone();
        let state = self.state.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
                inner.append_and_apply(records, &state)
            })
            .await
            .map_err(|_| QuorumError::ShuttingDown)?
        })
    }

    fn status(&self) -> QuorumStatus {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now_ms();
        QuorumStatus {
            node_id: self.node_id,
            leader_id: Some(self.node_id),
            epoch: inner.epoch,
            high_watermark: inner.log.next_offset(),
            // The only voter, always the leader and caught up with itself.
            voters: vec![ReplicaStatus {
                node_id: self.node_id,
                endpoint: None,
                log_end_offset: Some(inner.log.next_offset()),
                last_fetch_ms: Some(now),
                last_caught_up_ms: Some(now),
            }],
            observers: Vec::new(),
        }
    }
}
