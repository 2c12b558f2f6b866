//! openraft's state machine over the [`MetadataState`]: committed entries are applied to the image
//! (the response to each is its offset, which `propose` returns), and snapshots are the image
//! written back as records ([`snapshot::image_records`]) behind the `Voters` control record in
//! force, stored as the metadata directory's checkpoint files.
//!
//! A snapshot is requested each time `snapshot_interval_bytes` of entries have been applied since
//! the last one (Kafka's `metadata.log.max.record.bytes.between.snapshots`); openraft's own policy,
//! which counts entries, is off. Snapshot files are written on the blocking pool.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageIOError,
};
use tokio::sync::{mpsc, watch};

use super::convert::{self, log_entry, ConvertError};
use super::{Entry, LogId, StorageError, StoredMembership, TypeConfig};
use crate::control_records::{is_control_record, ControlRecord};
use crate::records::serialize_record;
use crate::snapshot::{self, SnapshotError, SnapshotId};
use crate::state::MetadataState;

type Meta = SnapshotMeta<u64, openraft::BasicNode>;

fn snapshot_write_error(error: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::error(error)).into()
}

fn snapshot_read_error(error: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_snapshot(None, AnyError::error(error)).into()
}

fn apply_error(error: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(error)).into()
}

/// The snapshot files of the metadata directory, shared by the state machine and its builders.
#[derive(Debug)]
pub(crate) struct SnapshotFiles {
    dir: PathBuf,
    current: Mutex<Option<(SnapshotId, Meta)>>,
    durable: watch::Sender<Option<SnapshotId>>,
}

impl SnapshotFiles {
    /// The files of `dir`, whose newest snapshot is `current`.
    pub(crate) fn new(dir: PathBuf, current: Option<(SnapshotId, Meta)>) -> Self {
        let (durable, _) = watch::channel(current.as_ref().map(|(id, _)| *id));
        Self {
            dir,
            current: Mutex::new(current),
            durable,
        }
    }

    /// Announces each snapshot once it is on disk.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<SnapshotId>> {
        self.durable.subscribe()
    }

    /// Writes `records` as snapshot `id` and makes it the current one (unless a newer one is);
    /// older files are deleted. Returns the file's contents. Blocking.
    fn store(
        &self,
        id: SnapshotId,
        meta: Meta,
        records: &[Bytes],
    ) -> Result<Vec<u8>, SnapshotError> {
        let data = snapshot::encode_snapshot(id, records)?;
        snapshot::write_snapshot_data(&self.dir, id, &data)?;
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_none_or(|(newest, _)| *newest <= id) {
            *current = Some((id, meta));
        }
        if let Some((newest, _)) = current.as_ref() {
            snapshot::delete_snapshots_before(&self.dir, *newest)?;
            self.durable.send_replace(Some(*newest));
        }
        tracing::info!(
            end_offset = id.end_offset,
            epoch = id.epoch,
            bytes = data.len(),
            "wrote metadata snapshot"
        );
        Ok(data)
    }

    fn current(&self) -> Option<(SnapshotId, Meta)> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The identity of the snapshot whose last entry is `last`.
fn snapshot_id(last: &LogId) -> Result<SnapshotId, ConvertError> {
    Ok(SnapshotId {
        end_offset: convert::offset(last.index)? + 1,
        epoch: convert::epoch(last.leader_id.term)?,
    })
}

/// The snapshot meta openraft knows a snapshot by.
pub(crate) fn snapshot_meta(id: SnapshotId, membership: StoredMembership) -> Meta {
    SnapshotMeta {
        last_log_id: Some(convert::log_id(id.epoch, id.end_offset - 1)),
        last_membership: membership,
        snapshot_id: format!("{}-{}", id.end_offset, id.epoch),
    }
}

/// The records of a snapshot: the membership in force, then `records` without control records.
fn snapshot_records(
    membership: &StoredMembership,
    records: impl IntoIterator<Item = Bytes>,
) -> Result<Vec<Bytes>, ConvertError> {
    let voters = convert::voter_set(membership.log_id().as_ref(), membership.membership())?;
    let mut all = vec![ControlRecord::Voters(voters).encode()];
    all.extend(records.into_iter().filter(|r| !is_control_record(r)));
    Ok(all)
}

/// The metadata state as openraft's state machine.
pub(crate) struct StateMachine {
    state: Arc<MetadataState>,
    files: Arc<SnapshotFiles>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    bytes_since_snapshot: u64,
    snapshot_interval_bytes: u64,
    /// Asks for a snapshot; the receiver triggers one through the Raft handle.
    snapshot_wanted: mpsc::Sender<()>,
}

impl StateMachine {
    /// The state machine of `state`, which holds everything up to `last_applied` (the newest
    /// snapshot), under `membership`.
    pub(crate) fn new(
        state: Arc<MetadataState>,
        files: Arc<SnapshotFiles>,
        last_applied: Option<LogId>,
        membership: StoredMembership,
        snapshot_interval_bytes: u64,
        snapshot_wanted: mpsc::Sender<()>,
    ) -> Self {
        Self {
            state,
            files,
            last_applied,
            membership,
            bytes_since_snapshot: 0,
            snapshot_interval_bytes: snapshot_interval_bytes.max(1),
            snapshot_wanted,
        }
    }
}

/// Builds a snapshot of the image as it was when the builder was made.
pub(crate) struct SnapshotBuilder {
    image: Arc<crate::image::MetadataImage>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    files: Arc<SnapshotFiles>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let last = self
            .last_applied
            .ok_or_else(|| snapshot_write_error("nothing has been applied to snapshot"))?;
        let id = snapshot_id(&last).map_err(snapshot_write_error)?;
        if self.image.last_offset != id.end_offset - 1 {
            tracing::warn!(
                image_offset = self.image.last_offset,
                applied_offset = id.end_offset - 1,
                "the metadata image lags the applied log (an entry failed to apply)"
            );
        }
        let image_records = snapshot::image_records(&self.image)
            .iter()
            .map(serialize_record)
            .collect::<Result<Vec<_>, _>>()
            .map_err(snapshot_write_error)?;
        let records =
            snapshot_records(&self.membership, image_records).map_err(snapshot_write_error)?;
        let meta = snapshot_meta(id, self.membership.clone());
        let files = self.files.clone();
        let stored_meta = meta.clone();
        let data = tokio::task::spawn_blocking(move || files.store(id, stored_meta, &records))
            .await
            .map_err(snapshot_write_error)?
            .map_err(snapshot_write_error)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<i64>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut offsets = Vec::new();
        for entry in entries {
            let stored = log_entry(&entry).map_err(apply_error)?;
            if let Err(error) = self.state.apply(&stored) {
                tracing::error!(%error, "committed metadata entry does not apply to the image");
            }
            if let EntryPayload::Membership(membership) = entry.payload {
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
            }
            self.last_applied = Some(entry.log_id);
            self.bytes_since_snapshot += stored.encoded_len() as u64;
            offsets.push(stored.offset);
        }
        if self.bytes_since_snapshot >= self.snapshot_interval_bytes {
            // Full means a request is already pending.
            let _ = self.snapshot_wanted.try_send(());
        }
        Ok(offsets)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.bytes_since_snapshot = 0;
        SnapshotBuilder {
            image: self.state.image(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            files: self.files.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Replaces the image with the snapshot's (which also checks that its records decode), then
    /// stores it; the log is reset by the purge openraft issues next.
    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let last = meta
            .last_log_id
            .ok_or_else(|| snapshot_write_error("received a snapshot without a last log id"))?;
        let id = snapshot_id(&last).map_err(snapshot_write_error)?;
        let received =
            snapshot::decode_snapshot(&Bytes::from(snapshot.into_inner())).map_err(|position| {
                snapshot_read_error(format!("received snapshot is damaged at byte {position}"))
            })?;
        let records =
            snapshot_records(&meta.last_membership, received).map_err(snapshot_write_error)?;
        self.state
            .install_snapshot(id, &records)
            .map_err(snapshot_write_error)?;
        let files = self.files.clone();
        let stored_meta = meta.clone();
        tokio::task::spawn_blocking(move || files.store(id, stored_meta, &records))
            .await
            .map_err(snapshot_write_error)?
            .map_err(snapshot_write_error)?;
        self.last_applied = Some(last);
        self.membership = meta.last_membership.clone();
        self.bytes_since_snapshot = 0;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some((id, meta)) = self.files.current() else {
            return Ok(None);
        };
        let dir = self.files.dir.clone();
        let data = tokio::task::spawn_blocking(move || {
            let records = snapshot::read_snapshot(&dir, id)
                .ok_or_else(|| format!("snapshot {id:?} is unreadable"))?;
            snapshot::encode_snapshot(id, &records).map_err(|e| e.to_string())
        })
        .await
        .map_err(snapshot_read_error)?
        .map_err(snapshot_read_error)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
