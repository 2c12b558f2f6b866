//! Snapshots of the metadata image: the image written back as the records that rebuild it
//! ([`image_records`]), stored in a checkpoint file so that the metadata log can be purged up to
//! it and a node that lacks the purged entries (new, or far behind) can be sent the image instead.
//!
//! A snapshot is identified like Kafka's by the offset after the last entry it covers and the
//! epoch of that entry: the file `<end offset, 20 digits>-<epoch, 10 digits>.checkpoint` in the
//! metadata directory. Its contents are the metadata log's own checksummed entry format
//! ([`crate::log`]) with the records split into chunks; a file that does not check out entirely is
//! ignored with a warning (an older snapshot plus the log, or a peer, provides the state). Files are
//! written to a temporary name, fsynced and renamed, so a crash never leaves a partial snapshot
//! under a valid name.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::image::{BrokerListener, MetadataImage, CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC};
use crate::log::{encode_entry, parse_entry_at, LogEntry, LogError};
use crate::records::{
    ConfigRecord, FeatureLevelRecord, MetadataRecord, PartitionRecord, ProducerIdsRecord,
    RegisterBrokerRecord, TopicRecord,
};

const SNAPSHOT_SUFFIX: &str = ".checkpoint";
/// Records per chunk (one checksummed entry) of a snapshot file.
const RECORDS_PER_CHUNK: usize = 1024;

/// Which prefix of the log a snapshot stands for: every entry before `end_offset`, the last of
/// which was written in `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotId {
    pub end_offset: i64,
    pub epoch: i32,
}

/// The records that rebuild `image` when applied to an empty image, in dependency order
/// (features, brokers, broker configs, then each topic with its configs and partitions).
pub fn image_records(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    records.extend(image.features.iter().map(|(name, level)| {
        MetadataRecord::FeatureLevel(FeatureLevelRecord {
            name: name.clone(),
            feature_level: *level,
        })
    }));
    for broker in image.brokers.values() {
        records.push(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id: broker.id,
            incarnation_id: broker.incarnation_id,
            broker_epoch: broker.epoch,
            end_points: broker
                .listeners
                .iter()
                .map(BrokerListener::to_endpoint)
                .collect(),
            rack: broker.rack.clone(),
            fenced: broker.fenced,
            in_controlled_shutdown: broker.in_controlled_shutdown,
            ..Default::default()
        }));
    }
    for (broker, configs) in &image.broker_configs {
        let resource_name = broker.map_or_else(String::new, |id| id.to_string());
        records.extend(configs.iter().map(|(name, value)| {
            MetadataRecord::Config(ConfigRecord {
                resource_type: CONFIG_RESOURCE_BROKER,
                resource_name: resource_name.clone(),
                name: name.clone(),
                value: Some(value.clone()),
            })
        }));
    }
    for topic in image.topics.values() {
        records.push(MetadataRecord::Topic(TopicRecord {
            name: topic.name.clone(),
            topic_id: topic.id,
        }));
        records.extend(topic.configs.iter().map(|(name, value)| {
            MetadataRecord::Config(ConfigRecord {
                resource_type: CONFIG_RESOURCE_TOPIC,
                resource_name: topic.name.clone(),
                name: name.clone(),
                value: Some(value.clone()),
            })
        }));
        records.extend(topic.partitions.iter().map(|(index, partition)| {
            MetadataRecord::Partition(PartitionRecord {
                partition_id: *index,
                topic_id: topic.id,
                replicas: partition.replicas.clone(),
                isr: partition.isr.clone(),
                leader: partition.leader,
                leader_epoch: partition.leader_epoch,
                partition_epoch: partition.partition_epoch,
                adding_replicas: partition.adding_replicas.clone(),
                removing_replicas: partition.removing_replicas.clone(),
                directories: vec![[0; 16]; partition.replicas.len()],
                ..Default::default()
            })
        }));
    }
    if image.next_producer_id > 0 {
        records.push(MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: -1,
            broker_epoch: -1,
            next_producer_id: image.next_producer_id,
        }));
    }
    records
}

/// Why a snapshot could not be written or listed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding snapshot: {0}")]
    Encode(#[from] LogError),
}

fn io_err(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io {
        context,
        path,
        source,
    }
}

fn snapshot_path(dir: &Path, id: SnapshotId) -> PathBuf {
    dir.join(format!(
        "{:020}-{:010}{SNAPSHOT_SUFFIX}",
        id.end_offset, id.epoch
    ))
}

fn parse_snapshot_name(name: &str) -> Option<SnapshotId> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    let (offset, epoch) = stem.split_once('-')?;
    if offset.len() != 20 || epoch.len() != 10 {
        return None;
    }
    Some(SnapshotId {
        end_offset: offset.parse().ok()?,
        epoch: epoch.parse().ok()?,
    })
}

/// Writes a snapshot of serialized `records` as `id` and returns its size in bytes. The file is
/// complete and durable when this returns.
pub fn write_snapshot(dir: &Path, id: SnapshotId, records: &[Bytes]) -> Result<u64, SnapshotError> {
    let data = encode_snapshot(id, records)?;
    write_snapshot_data(dir, id, &data)?;
    Ok(data.len() as u64)
}

/// The contents of a snapshot file holding `records` (what [`write_snapshot`] writes, and what a
/// leader sends to a node that needs the snapshot).
pub fn encode_snapshot(id: SnapshotId, records: &[Bytes]) -> Result<Vec<u8>, SnapshotError> {
    let mut data = Vec::new();
    for (index, chunk) in records.chunks(RECORDS_PER_CHUNK.max(1)).enumerate() {
        let entry = encode_entry(&LogEntry {
            offset: index as i64,
            epoch: id.epoch,
            records: chunk.to_vec(),
        })?;
        data.extend_from_slice(&entry);
    }
    Ok(data)
}

/// The records of snapshot contents made by [`encode_snapshot`], or the byte position of the first
/// damage.
pub fn decode_snapshot(data: &Bytes) -> Result<Vec<Bytes>, usize> {
    let mut records = Vec::new();
    let mut position = 0;
    while position < data.len() {
        let (entry, len) = parse_entry_at(data, position).ok_or(position)?;
        records.extend(entry.records);
        position += len;
    }
    Ok(records)
}

/// Durably stores encoded snapshot contents as snapshot `id` (temporary file, fsync, rename, fsync
/// of the directory).
pub fn write_snapshot_data(dir: &Path, id: SnapshotId, data: &[u8]) -> Result<(), SnapshotError> {
    let path = snapshot_path(dir, id);
    let tmp = path.with_extension("checkpoint.tmp");
    let mut file = File::create(&tmp).map_err(io_err("creating snapshot", &tmp))?;
    file.write_all(data)
        .map_err(io_err("writing snapshot", &tmp))?;
    file.sync_all().map_err(io_err("syncing snapshot", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("renaming snapshot", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))
}

/// The ids of the snapshots in `dir`, oldest first. Leftover temporary files are removed.
pub fn list_snapshots(dir: &Path) -> Result<Vec<SnapshotId>, SnapshotError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let entry = entry.map_err(io_err("listing", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".checkpoint.tmp") {
            fs::remove_file(entry.path()).map_err(io_err("deleting", &entry.path()))?;
        } else if let Some(id) = parse_snapshot_name(name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The records of snapshot `id`, or `None` if its file is missing, unreadable or damaged.
pub fn read_snapshot(dir: &Path, id: SnapshotId) -> Option<Vec<Bytes>> {
    let path = snapshot_path(dir, id);
    let data = match fs::read(&path) {
        Ok(data) => Bytes::from(data),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read metadata snapshot");
            return None;
        }
    };
    match decode_snapshot(&data) {
        Ok(records) => Some(records),
        Err(position) => {
            tracing::warn!(path = %path.display(), position, "metadata snapshot is damaged; ignoring it");
            None
        }
    }
}

/// The newest intact snapshot in `dir` and its records.
pub fn latest_snapshot(dir: &Path) -> Result<Option<(SnapshotId, Vec<Bytes>)>, SnapshotError> {
    Ok(list_snapshots(dir)?
        .into_iter()
        .rev()
        .find_map(|id| read_snapshot(dir, id).map(|records| (id, records))))
}

/// Deletes every snapshot older than `keep`.
pub fn delete_snapshots_before(dir: &Path, keep: SnapshotId) -> Result<(), SnapshotError> {
    for id in list_snapshots(dir)?.into_iter().filter(|id| *id < keep) {
        let path = snapshot_path(dir, id);
        fs::remove_file(&path).map_err(io_err("deleting snapshot", &path))?;
    }
    Ok(())
}
