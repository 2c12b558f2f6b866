//! The metadata state machine: applies committed log entries (and installed snapshots) to the
//! [`MetadataImage`] and publishes each new image through a watch channel. Whatever implements the
//! quorum ([`crate::quorum`]) drives it with exactly the committed entries, in log order; the
//! controller validates against it and the broker's publisher turns image changes into effects
//! (opening and deleting partition logs, loading group coordinators).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use crate::control_records::is_control_record;
use crate::image::MetadataImage;
use crate::log::LogEntry;
use crate::records::{deserialize_record, MetadataRecord};
use crate::snapshot::SnapshotId;

/// Why a committed entry could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("metadata entry at offset {offset}: {message}")]
pub struct ApplyFailure {
    pub offset: i64,
    pub message: String,
}

/// The applied image and its subscribers.
#[derive(Debug)]
pub struct MetadataState {
    image: watch::Sender<Arc<MetadataImage>>,
}

impl MetadataState {
    /// An empty state for the cluster `cluster_id`.
    pub fn new(cluster_id: String) -> Self {
        let (image, _) = watch::channel(Arc::new(MetadataImage::empty(cluster_id)));
        Self { image }
    }

    /// The newest applied image (a cheap shared snapshot).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// A receiver that sees every newly applied image (intermediate ones may be skipped when the
    /// receiver is slower than the log: consumers diff against what they saw last).
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    /// Offset of the last applied entry (-1 if none).
    pub fn applied_offset(&self) -> i64 {
        self.image.borrow().last_offset
    }

    /// Applies one committed entry. An entry that does not decode or apply leaves the image as it
    /// was (and is reported): it was validated before it was proposed, so this means a bug or
    /// damage, not a user error. Quorum control records ([`crate::control_records`]) are skipped:
    /// an entry of only those changes nothing but the applied offset.
    pub fn apply(&self, entry: &LogEntry) -> Result<(), ApplyFailure> {
        let failure = |message: String| ApplyFailure {
            offset: entry.offset,
            message,
        };
        let records = decode_records(&entry.records).map_err(failure)?;
        let mut next = MetadataImage::clone(&self.image.borrow());
        next.apply_entry(entry.offset, &records)
            .map_err(|e| failure(e.to_string()))?;
        self.image.send_replace(Arc::new(next));
        Ok(())
    }

    /// Replaces the image with the one a snapshot describes (control records skipped).
    pub fn install_snapshot(&self, id: SnapshotId, records: &[Bytes]) -> Result<(), ApplyFailure> {
        let offset = id.end_offset - 1;
        let failure = |message: String| ApplyFailure { offset, message };
        let records = decode_records(records).map_err(failure)?;
        let current = self.image.borrow().clone();
        let mut next = MetadataImage::empty(current.cluster_id.clone());
        next.apply_entry(offset, &records)
            .map_err(|e| failure(e.to_string()))?;
        // Keep versions increasing so that watchers comparing versions see a change.
        next.version = current.version + 1;
        self.image.send_replace(Arc::new(next));
        Ok(())
    }
}

fn decode_records(records: &[Bytes]) -> Result<Vec<MetadataRecord>, String> {
    records
        .iter()
        .filter(|r| !is_control_record(r))
        .map(|r| deserialize_record(r.clone()).map_err(|e| e.to_string()))
        .collect()
}
