//! The leader-epoch cache of a partition, after Kafka's `LeaderEpochFileCache`: for every leader
//! epoch that wrote to the log, the offset of its first batch. A follower asks the leader where an
//! epoch ended (OffsetForLeaderEpoch) to find where its log diverges; consumers ask it to validate a
//! position after a leader change.
//!
//! Entries are kept with strictly increasing epochs and non-decreasing start offsets. The cache is
//! persisted in the partition directory as `leader-epoch-checkpoint`, in Kafka's text format: a
//! version line (`0`), a count line, then one `<epoch> <start offset>` line per entry. The file is
//! rewritten (atomically, fsynced) whenever the cache changes: a new epoch, a truncation from the
//! end, or the log start offset moving past an entry.

use std::fs;
use std::path::Path;

use crate::error::{StorageError, StorageResult};
use crate::segment::write_file_atomically;

/// Name of the checkpoint file inside the partition directory (Kafka's name).
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
const CHECKPOINT_VERSION: &str = "0";

/// Kafka's "no epoch" (`UNDEFINED_EPOCH`).
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's "no offset" for an epoch lookup (`UNDEFINED_EPOCH_OFFSET`).
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One leader epoch and the offset of the first batch it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The epochs of a log, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any batch carried one.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|entry| entry.epoch)
    }

    /// Records that `epoch` wrote a batch at `start_offset`; returns whether the cache changed.
    /// Nothing changes for the latest epoch at or after its known start. Otherwise, as in Kafka,
    /// entries that would break monotonicity (an epoch at or above `epoch`, or a start at or
    /// after `start_offset`) are dropped before the new entry is added. Negative epochs or offsets
    /// (a batch written without epoch) are ignored.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        let update_needed = self
            .entries
            .last()
            .is_none_or(|latest| latest.epoch != epoch || start_offset < latest.start_offset);
        if !update_needed {
            return false;
        }
        let keep = self
            .entries
            .iter()
            .take_while(|entry| entry.epoch < epoch && entry.start_offset < start_offset)
            .count();
        if self.entries.len() - keep > 1
            || self.entries[keep..]
                .first()
                .is_some_and(|removed| removed.start_offset != start_offset)
        {
            tracing::warn!(
                epoch,
                start_offset,
                removed = ?&self.entries[keep..],
                "leader epoch cache: dropping entries that a new epoch contradicts"
            );
        }
        self.entries.truncate(keep);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Drops the entries starting at or after `end_offset` (the log was truncated there); returns
    /// whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|entry| entry.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The log start moved to `start_offset`: entries starting at or below it are dropped, except
    /// the newest of them, which now starts at `start_offset` (Kafka's `truncateFromStart`).
    /// Returns whether the cache changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covered = self
            .entries
            .partition_point(|entry| entry.start_offset <= start_offset);
        let Some(newest_covered) = covered.checked_sub(1) else {
            return false;
        };
        let moved = EpochEntry {
            epoch: self.entries[newest_covered].epoch,
            start_offset,
        };
        let changed = newest_covered > 0 || self.entries[newest_covered] != moved;
        self.entries.drain(..newest_covered);
        self.entries[0] = moved;
        changed
    }

    /// OffsetForLeaderEpoch, with Kafka's rules: for the latest epoch, (it, `log_end_offset`); for
    /// an older known epoch, (the newest epoch at or below it, the start of the next higher epoch);
    /// for an epoch below every known one, (the requested epoch, the start of the first epoch);
    /// for `UNDEFINED_EPOCH`, an epoch above every known one, or an empty cache,
    /// (`UNDEFINED_EPOCH`, `UNDEFINED_EPOCH_OFFSET`).
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested_epoch == UNDEFINED_EPOCH {
            return UNDEFINED;
        }
        if self.latest_epoch() == Some(requested_epoch) {
            return (requested_epoch, log_end_offset);
        }
        let higher = self
            .entries
            .partition_point(|entry| entry.epoch <= requested_epoch);
        let Some(next) = self.entries.get(higher) else {
            return UNDEFINED;
        };
        match higher.checked_sub(1) {
            Some(floor) => (self.entries[floor].epoch, next.start_offset),
            None => (requested_epoch, next.start_offset),
        }
    }

    /// Reads `leader-epoch-checkpoint` from `dir`: `None` when it is absent or malformed (logged),
    /// in which case the caller rebuilds the cache from the log.
    pub(crate) fn load(dir: &Path) -> StorageResult<Option<Self>> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
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
        let parsed = Self::decode(&text);
        if parsed.is_none() {
            tracing::warn!(path = %path.display(), "ignoring malformed leader epoch checkpoint");
        }
        Ok(parsed)
    }

    /// Writes the cache to `leader-epoch-checkpoint` in `dir` (atomically, fsynced).
    pub(crate) fn write(&self, dir: &Path) -> StorageResult<()> {
        write_file_atomically(&dir.join(LEADER_EPOCH_CHECKPOINT), self.encode().as_bytes())
    }

    fn encode(&self) -> String {
        let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        text
    }

    fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != CHECKPOINT_VERSION {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        let mut cache = Self::default();
        for line in lines.by_ref().take(count) {
            let mut fields = line.split_whitespace();
            let epoch: i32 = fields.next()?.parse().ok()?;
            let start_offset: i64 = fields.next()?.parse().ok()?;
            let monotonic = cache
                .entries
                .last()
                .is_none_or(|last| last.epoch < epoch && last.start_offset <= start_offset);
            if fields.next().is_some() || epoch < 0 || start_offset < 0 || !monotonic {
                return None;
            }
            cache.entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        (cache.entries.len() == count && lines.all(|line| line.trim().is_empty())).then_some(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache {
            entries: entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        }
    }

    #[test]
    fn assign_keeps_epochs_monotonic() {
        let mut epochs = LeaderEpochCache::default();
        assert!(epochs.assign(1, 0));
        assert!(!epochs.assign(1, 5), "same epoch later: nothing new");
        assert!(epochs.assign(3, 10));
        assert!(!epochs.assign(-1, 12), "no epoch: ignored");
        assert_eq!(epochs, cache(&[(1, 0), (3, 10)]));
        // A lower start for the latest epoch replaces it.
        assert!(epochs.assign(3, 8));
        assert_eq!(epochs, cache(&[(1, 0), (3, 8)]));
        // An older epoch than the latest drops the newer entries, as in Kafka.
        assert!(epochs.assign(2, 9));
        assert_eq!(epochs, cache(&[(1, 0), (2, 9)]));
        // A newer epoch starting before existing entries drops them too.
        assert!(epochs.assign(4, 0));
        assert_eq!(epochs, cache(&[(4, 0)]));
    }

    #[test]
    fn end_offsets_follow_kafkas_rules() {
        let epochs = cache(&[(2, 10), (4, 30), (5, 50)]);
        assert_eq!(epochs.end_offset_for(5, 70), (5, 70), "latest: the log end");
        assert_eq!(epochs.end_offset_for(4, 70), (4, 50));
        assert_eq!(
            epochs.end_offset_for(3, 70),
            (2, 30),
            "unknown: the floor epoch"
        );
        assert_eq!(epochs.end_offset_for(2, 70), (2, 30));
        assert_eq!(
            epochs.end_offset_for(1, 70),
            (1, 10),
            "below all: first start"
        );
        assert_eq!(epochs.end_offset_for(6, 70), (-1, -1), "above all");
        assert_eq!(epochs.end_offset_for(UNDEFINED_EPOCH, 70), (-1, -1));
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 70), (-1, -1));
    }

    #[test]
    fn truncations_from_both_ends() {
        let mut epochs = cache(&[(2, 10), (4, 30), (5, 50)]);
        assert!(!epochs.truncate_from_end(51));
        assert!(epochs.truncate_from_end(50));
        assert_eq!(epochs, cache(&[(2, 10), (4, 30)]));
        assert!(!epochs.truncate_from_start(5));
        assert!(!epochs.truncate_from_start(10));
        assert!(epochs.truncate_from_start(20));
        assert_eq!(epochs, cache(&[(2, 20), (4, 30)]));
        assert!(epochs.truncate_from_start(35));
        assert_eq!(epochs, cache(&[(4, 35)]));
        assert!(epochs.truncate_from_end(0));
        assert_eq!(epochs, LeaderEpochCache::default());
    }

    #[test]
    fn checkpoint_round_trip_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LeaderEpochCache::load(dir.path()).unwrap(), None);
        let epochs = cache(&[(0, 0), (3, 1200)]);
        epochs.write(dir.path()).unwrap();
        let text = fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT)).unwrap();
        assert_eq!(text, "0\n2\n0 0\n3 1200\n");
        assert_eq!(LeaderEpochCache::load(dir.path()).unwrap(), Some(epochs));
        for malformed in [
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0 0\n",
            "0\n2\n3 0\n2 5\n",
            "",
        ] {
            fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT), malformed).unwrap();
            assert_eq!(
                LeaderEpochCache::load(dir.path()).unwrap(),
                None,
                "{malformed:?}"
            );
        }
    }
}
