//! Idempotent producer state, like Kafka's `ProducerStateManager`: per producer id the current
//! epoch and the metadata of its last five batches, used to reject sequence gaps and stale epochs
//! and to answer a retried batch with the offsets it was first written at.
//!
//! Rules (Kafka's): an older epoch is `InvalidProducerEpoch`; a newer epoch must start at sequence
//! 0; within an epoch a batch equal to one of the cached five is a duplicate, otherwise its first
//! sequence must follow the last one (wrapping from `i32::MAX` to 0). A producer id with no state
//! is accepted at any sequence (Kafka 2.x+ behaviour; `UNKNOWN_PRODUCER_ID` is not used).
//!
//! The state is persisted as `<offset>.snapshot` files (state as of log end offset `offset`); on
//! open the newest usable snapshot is loaded and the batch headers after it are replayed.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use strom_protocol::records::BatchHeader;

use crate::error::{IoContext, StorageError, StorageResult};
use crate::segment::{fsync_dir, write_file_atomically};

/// How many batches per producer are remembered for duplicate detection (Kafka's constant).
pub const PRODUCER_BATCH_CACHE: usize = 5;

const SNAPSHOT_SUFFIX: &str = ".snapshot";
const SNAPSHOT_MAGIC: &[u8; 8] = b"STROMPS1";

/// Offsets and sequences of one batch already in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// Max timestamp of the batch as stored (the append time under LogAppendTime).
    pub timestamp: i64,
}

/// What is known about one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
}

/// Verdict on a batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data in sequence: append it.
    Append,
    /// A retry of a batch already in the log, at these offsets.
    Duplicate(BatchMetadata),
}

/// The sequence number after `sequence`, wrapping like Kafka's.
fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

/// The last sequence of a batch, wrapping past `i32::MAX`.
fn last_sequence(header: &BatchHeader) -> i32 {
    let last = i64::from(header.base_sequence) + i64::from(header.last_offset_delta);
    (last % (i64::from(i32::MAX) + 1)) as i32
}

/// State of every idempotent producer that wrote to one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    /// Number of producer ids tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The epoch last seen from `producer_id`.
    pub fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|entry| entry.epoch)
    }

    /// Checks a batch (with a producer id) against the state, without changing it.
    pub fn check(&self, header: &BatchHeader) -> StorageResult<SequenceCheck> {
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if header.producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id: header.producer_id,
                current: entry.epoch,
                received: header.producer_epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            if header.base_sequence != 0 {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id: header.producer_id,
                    epoch: header.producer_epoch,
                    expected: 0,
                    received: header.base_sequence,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        let last = last_sequence(header);
        if let Some(original) = entry.batches.iter().find(|batch| {
            batch.first_sequence == header.base_sequence && batch.last_sequence == last
        }) {
            return Ok(SequenceCheck::Duplicate(*original));
        }
        match entry.batches.back() {
            Some(previous) if header.base_sequence != next_sequence(previous.last_sequence) => {
                Err(StorageError::OutOfOrderSequence {
                    producer_id: header.producer_id,
                    epoch: header.producer_epoch,
                    expected: next_sequence(previous.last_sequence),
                    received: header.base_sequence,
                })
            }
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records a batch written at `base_offset` (the header may carry the pre-append offset).
    /// `timestamp` is the batch's max timestamp as stored.
    pub fn record(&mut self, header: &BatchHeader, base_offset: i64, timestamp: i64) {
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
            });
        if entry.epoch != header.producer_epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMetadata {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            base_offset,
            last_offset: base_offset + i64::from(header.last_offset_delta),
            timestamp,
        });
        while entry.batches.len() > PRODUCER_BATCH_CACHE {
            entry.batches.pop_front();
        }
    }

    /// Per producer id, the last offset of its newest batch in the log. The log cleaner keeps that
    /// batch (emptied if need be) so the producer's sequence survives compaction, as Kafka does.
    pub fn last_batch_offsets(&self) -> HashMap<i64, i64> {
        self.producers
            .iter()
            .filter_map(|(&id, entry)| entry.batches.back().map(|batch| (id, batch.last_offset)))
            .collect()
    }

    /// Forgets producers whose last write lies before the log start (Kafka does the same when
    /// the log start offset moves).
    pub fn evict_before(&mut self, log_start_offset: i64) {
        self.producers.retain(|_, entry| {
            entry
                .batches
                .back()
                .is_some_and(|batch| batch.last_offset >= log_start_offset)
        });
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.producers.len() * 64);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        for id in ids {
            let entry = &self.producers[id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.push(entry.batches.len() as u8);
            for batch in &entry.batches {
                out.extend_from_slice(&batch.first_sequence.to_be_bytes());
                out.extend_from_slice(&batch.last_sequence.to_be_bytes());
                out.extend_from_slice(&batch.base_offset.to_be_bytes());
                out.extend_from_slice(&batch.last_offset.to_be_bytes());
                out.extend_from_slice(&batch.timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    fn decode(data: &[u8]) -> Option<Self> {
        let (body, crc) = data.split_at(data.len().checked_sub(4)?);
        if crc32c::crc32c(body).to_be_bytes() != crc || !body.starts_with(SNAPSHOT_MAGIC) {
            return None;
        }
        let mut reader = SliceReader {
            data: &body[SNAPSHOT_MAGIC.len()..],
        };
        let count = u32::from_be_bytes(reader.take()?);
        let mut producers = HashMap::new();
        for _ in 0..count {
            let id = i64::from_be_bytes(reader.take()?);
            let epoch = i16::from_be_bytes(reader.take()?);
            let [batch_count] = reader.take::<1>()?;
            let mut batches = VecDeque::new();
            for _ in 0..batch_count {
                batches.push_back(BatchMetadata {
                    first_sequence: i32::from_be_bytes(reader.take()?),
                    last_sequence: i32::from_be_bytes(reader.take()?),
                    base_offset: i64::from_be_bytes(reader.take()?),
                    last_offset: i64::from_be_bytes(reader.take()?),
                    timestamp: i64::from_be_bytes(reader.take()?),
                });
            }
            producers.insert(id, ProducerEntry { epoch, batches });
        }
        reader.data.is_empty().then_some(Self { producers })
    }

    /// Writes `<offset>.snapshot` atomically and keeps only the newest two snapshots.
    pub fn write_snapshot(&self, dir: &Path, offset: i64) -> StorageResult<()> {
        let path = snapshot_path(dir, offset);
        write_file_atomically(&path, &self.encode())?;
        let snapshots = list_snapshots(dir)?;
        if snapshots.len() > 2 {
            for (_, old) in &snapshots[..snapshots.len() - 2] {
                fs::remove_file(old)
                    .context(|| format!("deleting old snapshot {}", old.display()))?;
            }
            fsync_dir(dir)?;
        }
        Ok(())
    }

    /// Deletes snapshots taken beyond `log_end_offset` (after a truncation or a torn tail), then
    /// loads the newest snapshot that decodes. Returns the state and the offset it is valid at;
    /// with no usable snapshot, an empty state valid at `None` (replay from the log start).
    pub fn load_latest(dir: &Path, log_end_offset: i64) -> StorageResult<(Self, Option<i64>)> {
        let mut snapshots = list_snapshots(dir)?;
        while let Some((offset, path)) = snapshots.last() {
            if *offset <= log_end_offset {
                break;
            }
            fs::remove_file(path)
                .context(|| format!("deleting stale snapshot {}", path.display()))?;
            snapshots.pop();
        }
        for (offset, path) in snapshots.iter().rev() {
            let data = fs::read(path).context(|| format!("reading snapshot {}", path.display()))?;
            match Self::decode(&data) {
                Some(state) => return Ok((state, Some(*offset))),
                None => {
                    tracing::warn!(path = %path.display(), "ignoring corrupt producer state snapshot")
                }
            }
        }
        Ok((Self::default(), None))
    }
}

struct SliceReader<'a> {
    data: &'a [u8],
}

impl SliceReader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let head = self.data.get(..N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        self.data = &self.data[N..];
        Some(out)
    }
}

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// Snapshot files of `dir`, oldest first.
fn list_snapshots(dir: &Path) -> StorageResult<Vec<(i64, PathBuf)>> {
    let mut snapshots = Vec::new();
    for entry in fs::read_dir(dir).context(|| format!("listing {}", dir.display()))? {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SNAPSHOT_SUFFIX)) else {
            continue;
        };
        if let Ok(offset) = stem.parse::<i64>() {
            snapshots.push((offset, entry.path()));
        }
    }
    snapshots.sort();
    Ok(snapshots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_protocol::ErrorCode;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count: records,
        }
    }

    #[test]
    fn sequence_rules() {
        let mut state = ProducerStateManager::default();
        let first = header(7, 0, 5, 2);
        assert_eq!(state.check(&first).unwrap(), SequenceCheck::Append);
        state.record(&first, 100, 1);
        assert!(
            matches!(state.check(&first).unwrap(), SequenceCheck::Duplicate(m) if m.base_offset == 100)
        );
        assert!(matches!(
            state.check(&header(7, 0, 9, 1)),
            Err(StorageError::OutOfOrderSequence { expected: 7, .. })
        ));
        assert_eq!(
            state.check(&header(7, 0, 7, 1)).unwrap(),
            SequenceCheck::Append
        );
        assert!(matches!(
            state.check(&header(7, 1, 3, 1)),
            Err(StorageError::OutOfOrderSequence { expected: 0, .. })
        ));
        state.record(&header(7, 1, 0, 1), 200, 1);
        assert!(matches!(
            state.check(&header(7, 0, 7, 1)),
            Err(StorageError::InvalidProducerEpoch { current: 1, .. })
        ));
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut state = ProducerStateManager::default();
        state.record(&header(1, 0, i32::MAX - 1, 2), 0, 0);
        assert_eq!(
            state.check(&header(1, 0, 0, 1)).unwrap(),
            SequenceCheck::Append
        );
        let wrapping = header(2, 0, i32::MAX, 2);
        assert_eq!(last_sequence(&wrapping), 0);
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut state = ProducerStateManager::default();
        for i in 0..6 {
            state.record(&header(1, 0, i, 1), i64::from(i), 0);
        }
        assert_eq!(
            state.check(&header(1, 0, 0, 1)).unwrap_err().error_code(),
            ErrorCode::OutOfOrderSequenceNumber
        );
        assert!(matches!(
            state.check(&header(1, 0, 1, 1)).unwrap(),
            SequenceCheck::Duplicate(_)
        ));
    }

    #[test]
    fn snapshot_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::default();
        state.record(&header(1, 3, 0, 4), 10, 99);
        state.record(&header(2, 0, 8, 1), 14, 100);
        state.write_snapshot(dir.path(), 15).unwrap();
        let (loaded, offset) = ProducerStateManager::load_latest(dir.path(), 20).unwrap();
        assert_eq!(offset, Some(15));
        assert_eq!(loaded, state);
        let (_, offset) = ProducerStateManager::load_latest(dir.path(), 14).unwrap();
        assert_eq!(offset, None);
    }
}
