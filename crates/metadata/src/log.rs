//! The metadata log on disk: checksummed entries, each a batch of serialized metadata records
//! committed as a unit, in segment files named by the offset of their first entry. It is the Raft
//! log of the metadata quorum: besides appending at the end as a leader, it accepts entries at given
//! offsets and epochs (a follower copying its leader), truncates a divergent suffix, and drops
//! segments wholly covered by a snapshot ([`crate::snapshot`]).
//!
//! # File format
//!
//! Segments are the files `<base offset, 20 digits>.log` in the metadata directory (by convention
//! `<log.dir>/__cluster_metadata-0`, [`METADATA_LOG_DIR_NAME`]). Each is a sequence of entries, all
//! integers big-endian:
//!
//! ```text
//! entry   := length:u32 crc:u32 offset:i64 epoch:i32 payload
//! payload := count:u32 (record_length:u32 record)*count
//! ```
//!
//! * `length` counts the bytes after itself (crc through the end of the payload).
//! * `crc` is CRC-32C of everything after itself (offset, epoch, payload).
//! * `offset` is the entry's index in the log, consecutive across segments. One entry is one Raft
//!   log entry; `epoch` is the leader epoch (Raft term) that wrote it.
//! * each `record` is one metadata record serialized as Kafka's `MetadataRecordSerde` does
//!   (see [`crate::records`]); this module treats records as opaque bytes.
//!
//! # Durability and recovery
//!
//! Every append and truncation is fsynced before it returns, so an acknowledged entry (and a vote
//! cast on the strength of it) is never lost. On open every segment is scanned. A damaged entry at
//! the very end of the last segment is a torn write (a crash in the middle of an append): it is cut
//! off with a warning. Damage followed by any intact entry is corruption of acknowledged data, and
//! the log refuses to open ([`LogError::Corrupt`]) rather than silently dropping everything after
//! it: an operator (or, in a replicated quorum, a copy from a peer) must repair it.
//!
//! Entries since the oldest retained segment are also kept in memory, so the quorum can serve
//! reads to followers without touching the disk; the log is purged behind snapshots, which bounds
//! that memory.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::snapshot::SnapshotId;

/// Conventional name of the metadata directory inside a broker's log directory (Kafka's
/// `__cluster_metadata-0`); partition-log scans must skip it.
pub const METADATA_LOG_DIR_NAME: &str = "__cluster_metadata-0";
const SEGMENT_SUFFIX: &str = ".log";
/// Bytes of an entry before its payload: length, crc, offset, epoch.
const ENTRY_HEADER_LEN: usize = 4 + 4 + 8 + 4;
/// Bytes covered by `length` besides the payload: crc, offset, epoch.
const LENGTH_OVERHEAD: usize = 4 + 8 + 4;
/// Upper bound of one entry, to refuse absurd lengths from a corrupt file before allocating.
pub const MAX_ENTRY_LEN: usize = 64 * 1024 * 1024;

/// Why the metadata log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata log entry is {0} bytes, more than the {MAX_ENTRY_LEN} allowed")]
    EntryTooLarge(usize),
    #[error("metadata log {0} is unusable after a failed write that could not be undone")]
    Failed(PathBuf),
    #[error(
        "metadata log segment {path} is corrupt at byte {position} (after offset {last_good_offset}) \
         and intact entries follow the damage; refusing to start rather than drop committed \
         metadata: restore the directory from a backup or a peer"
    )]
    Corrupt {
        path: PathBuf,
        position: usize,
        last_good_offset: i64,
    },
    #[error("metadata log segments are not contiguous: {path} starts at offset {found}, expected {expected}")]
    Gap {
        path: PathBuf,
        expected: i64,
        found: i64,
    },
    #[error("entry offset {found} does not follow the log end {expected}")]
    NotContiguous { expected: i64, found: i64 },
    #[error("entries {snapshot_end}..{log_start} are missing between the snapshot and the log")]
    MissingAfterSnapshot { snapshot_end: i64, log_start: i64 },
    #[error("the log starts at offset {0} but no snapshot covers the entries before it")]
    NoSnapshotBeforeStart(i64),
}

/// One entry of the metadata log: a batch of serialized records committed together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub offset: i64,
    pub epoch: i32,
    pub records: Vec<Bytes>,
}

impl LogEntry {
    /// Bytes this entry takes on disk.
    pub fn encoded_len(&self) -> usize {
        ENTRY_HEADER_LEN + 4 + self.records.iter().map(|r| 4 + r.len()).sum::<usize>()
    }
}

/// A segment file: its base offset and length.
#[derive(Debug)]
struct SegmentFile {
    base_offset: i64,
    path: PathBuf,
    len: u64,
}

/// The metadata log: segment files on disk, and every retained entry in memory.
#[derive(Debug)]
pub struct MetadataLog {
    dir: PathBuf,
    /// Ordered by base offset; never empty; the last one is appended to.
    segments: Vec<SegmentFile>,
    active: File,
    /// Retained entries, consecutive, starting at `first_offset`.
    entries: VecDeque<LogEntry>,
    /// For each retained entry: the index into `segments` and the byte position there.
    positions: VecDeque<(usize, u64)>,
    first_offset: i64,
    /// Epoch of the entry before `first_offset` (0 if unknown), so `last_epoch` survives a purge.
    epoch_before_first: i32,
    /// Set when a failed write could not be undone; the log then refuses further writes.
    failed: bool,
}

fn io_err(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.to_path_buf();
    move |source| LogError::Io {
        context,
        path,
        source,
    }
}

fn segment_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}{SEGMENT_SUFFIX}"))
}

fn parse_segment_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

fn open_for_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err("opening metadata log segment", path))
}

impl MetadataLog {
    /// Opens (creating if needed) the log in the metadata directory `dir`, truncating a torn tail.
    /// A new, empty log starts at offset `start_if_empty` (the offset after the newest snapshot,
    /// or 0).
    pub fn open(dir: &Path, start_if_empty: i64) -> Result<Self, LogError> {
        let dir_existed = dir.is_dir();
        fs::create_dir_all(dir).map_err(io_err("creating metadata log directory", dir))?;
        if let Some(parent) = dir.parent().filter(|_| !dir_existed) {
            sync_dir(parent)?;
        }
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("listing metadata log directory", dir))? {
            let entry = entry.map_err(io_err("listing metadata log directory", dir))?;
            if let Some(base) = entry.file_name().to_str().and_then(parse_segment_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();

        let mut segments = Vec::new();
        let mut entries = VecDeque::new();
        let mut positions = VecDeque::new();
        let last_index = bases.len().saturating_sub(1);
        for (index, base) in bases.iter().copied().enumerate() {
            let path = segment_path(dir, base);
            let expected = entries.back().map(|e: &LogEntry| e.offset + 1);
            if let Some(expected) = expected.filter(|expected| *expected != base) {
                return Err(LogError::Gap {
                    path,
                    expected,
                    found: base,
                });
            }
            let mut contents = Vec::new();
            File::open(&path)
                .and_then(|mut file| file.read_to_end(&mut contents))
                .map_err(io_err("reading metadata log segment", &path))?;
            let file_len = contents.len();
            let scan = scan_entries(Bytes::from(contents), base);
            if scan.valid_len < file_len {
                let last_good_offset = scan.entries.last().map_or(base - 1, |e| e.offset);
                if index != last_index || scan.intact_entry_after_damage {
                    return Err(LogError::Corrupt {
                        path,
                        position: scan.valid_len,
                        last_good_offset,
                    });
                }
                tracing::warn!(
                    path = %path.display(),
                    valid_bytes = scan.valid_len,
                    dropped_bytes = file_len - scan.valid_len,
                    "metadata log has a torn tail; truncating it"
                );
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|file| {
                        file.set_len(scan.valid_len as u64)?;
                        file.sync_all()
                    })
                    .map_err(io_err("truncating metadata log segment", &path))?;
            }
            let mut position = 0u64;
            for entry in scan.entries {
                positions.push_back((segments.len(), position));
                position += entry.encoded_len() as u64;
                entries.push_back(entry);
            }
            segments.push(SegmentFile {
                base_offset: base,
                path,
                len: scan.valid_len as u64,
            });
        }
        if segments.is_empty() {
            let path = segment_path(dir, start_if_empty);
            segments.push(SegmentFile {
                base_offset: start_if_empty,
                path,
                len: 0,
            });
        }
        let Some(tail) = segments.last() else {
            unreachable!("a segment was pushed above");
        };
        let tail_existed = tail.path.exists();
        let mut active = open_for_append(&tail.path)?;
        if !tail_existed {
            sync_dir(dir)?;
        }
        active
            .seek(SeekFrom::End(0))
            .map_err(io_err("seeking metadata log segment", &tail.path))?;
        let first_offset = segments[0].base_offset;
        let log = Self {
            dir: dir.to_path_buf(),
            segments,
            active,
            entries,
            positions,
            first_offset,
            epoch_before_first: 0,
            failed: false,
        };
        log.debug_check();
        Ok(log)
    }

    /// Opens the log so that it continues `snapshot`, the newest intact snapshot on disk (if any):
    /// a log that ends before the snapshot (a crash between storing a snapshot received from the
    /// leader and resetting the log) restarts right after it; entries missing between the snapshot
    /// and the log, or a log that starts later than 0 with no snapshot, are refused.
    pub fn open_after_snapshot(dir: &Path, snapshot: Option<SnapshotId>) -> Result<Self, LogError> {
        let mut log = Self::open(dir, snapshot.map_or(0, |id| id.end_offset))?;
        match snapshot {
            Some(id) if log.next_offset() < id.end_offset => log.reset(id.end_offset, id.epoch)?,
            Some(id) if log.first_offset() > id.end_offset => {
                return Err(LogError::MissingAfterSnapshot {
                    snapshot_end: id.end_offset,
                    log_start: log.first_offset(),
                })
            }
            Some(id) if log.first_offset() == id.end_offset => log.set_epoch_before_first(id.epoch),
            Some(_) => {}
            None if log.first_offset() > 0 => {
                return Err(LogError::NoSnapshotBeforeStart(log.first_offset()))
            }
            None => {}
        }
        Ok(log)
    }

    /// Offset of the first retained entry (the log start); equals [`Self::next_offset`] when empty.
    pub fn first_offset(&self) -> i64 {
        self.first_offset
    }

    /// Offset the next appended entry gets (the log end).
    pub fn next_offset(&self) -> i64 {
        self.first_offset + self.entries.len() as i64
    }

    /// Epoch of the last entry (0 for a log that never had one).
    pub fn last_epoch(&self) -> i32 {
        self.entries
            .back()
            .map_or(self.epoch_before_first, |e| e.epoch)
    }

    /// The retained entry at `offset`.
    pub fn entry(&self, offset: i64) -> Option<&LogEntry> {
        let index = usize::try_from(offset.checked_sub(self.first_offset)?).ok()?;
        self.entries.get(index)
    }

    /// Retained entries from `offset` (clamped to the log start) to the end.
    pub fn entries_from(&self, offset: i64) -> impl Iterator<Item = &LogEntry> {
        let skip = usize::try_from(offset.saturating_sub(self.first_offset)).unwrap_or(0);
        self.entries.iter().skip(skip)
    }

    /// Bytes of the segments on disk.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Appends one entry holding `records` at the log end, as the leader of `epoch`, fsyncs, and
    /// returns the entry's offset.
    pub fn append(&mut self, epoch: i32, records: Vec<Bytes>) -> Result<i64, LogError> {
        let offset = self.next_offset();
        self.append_entry(LogEntry {
            offset,
            epoch,
            records,
        })?;
        Ok(offset)
    }

    /// Appends an entry whose offset and epoch were chosen elsewhere (a follower copying its
    /// leader); the offset must be the log end. Fsynced before it returns.
    ///
    /// If the write or fsync fails, the partial entry is cut off again so the log stays a clean
    /// sequence of entries; if even that fails, the log refuses all further writes.
    pub fn append_entry(&mut self, entry: LogEntry) -> Result<(), LogError> {
        self.append_entries(vec![entry])
    }

    /// Appends consecutive entries starting at the log end with a single write and fsync (a
    /// follower copying a batch from its leader). All or none of them are appended.
    pub fn append_entries(&mut self, entries: Vec<LogEntry>) -> Result<(), LogError> {
        self.check_usable()?;
        let mut encoded = BytesMut::new();
        let mut lengths = Vec::with_capacity(entries.len());
        for (entry, expected) in entries.iter().zip(self.next_offset()..) {
            if entry.offset != expected {
                return Err(LogError::NotContiguous {
                    expected,
                    found: entry.offset,
                });
            }
            let bytes = encode_entry(entry)?;
            lengths.push(bytes.len() as u64);
            encoded.extend_from_slice(&bytes);
        }
        if entries.is_empty() {
            return Ok(());
        }
        let segment_index = self.segments.len() - 1;
        let tail = &mut self.segments[segment_index];
        let written = self
            .active
            .write_all(&encoded)
            .and_then(|()| self.active.sync_data());
        if let Err(source) = written {
            let undone = self
                .active
                .set_len(tail.len)
                .and_then(|()| self.active.seek(SeekFrom::Start(tail.len)).map(drop));
            self.failed = undone.is_err();
            return Err(LogError::Io {
                context: "appending to metadata log segment",
                path: tail.path.clone(),
                source,
            });
        }
        for (entry, length) in entries.into_iter().zip(lengths) {
            self.positions.push_back((segment_index, tail.len));
            tail.len += length;
            debug_assert!(
                self.entries
                    .back()
                    .is_none_or(|last| last.epoch <= entry.epoch),
                "metadata log epochs never decrease"
            );
            self.entries.push_back(entry);
        }
        Ok(())
    }

    /// Removes every entry at or after `offset` (a follower dropping a suffix that diverges from
    /// its new leader's log). Fsynced before it returns. Offsets before the log start are refused
    /// by clamping: the retained prefix is never touched.
    pub fn truncate_from(&mut self, offset: i64) -> Result<(), LogError> {
        self.check_usable()?;
        if offset >= self.next_offset() {
            return Ok(());
        }
        let offset = offset.max(self.first_offset);
        let keep = usize::try_from(offset - self.first_offset).unwrap_or(0);
        let (segment_index, position) = self.positions[keep];
        // Whole segments after the one holding `offset` go; that one is cut at the entry.
        while self.segments.len() > segment_index + 1 {
            let Some(segment) = self.segments.pop() else {
                break;
            };
            fs::remove_file(&segment.path)
                .map_err(io_err("deleting metadata log segment", &segment.path))?;
        }
        let tail = &mut self.segments[segment_index];
        let file = open_for_append(&tail.path)?;
        file.set_len(position)
            .and_then(|()| file.sync_all())
            .map_err(io_err("truncating metadata log segment", &tail.path))?;
        tail.len = position;
        self.active = file;
        self.active
            .seek(SeekFrom::End(0))
            .map_err(io_err("seeking metadata log segment", &tail.path))?;
        sync_dir(&self.dir)?;
        self.entries.truncate(keep);
        self.positions.truncate(keep);
        self.debug_check();
        Ok(())
    }

    /// Starts a new segment at the log end, so that everything before it can later be purged as a
    /// whole. A no-op when the active segment is empty.
    pub fn roll(&mut self) -> Result<(), LogError> {
        self.check_usable()?;
        if self.segments.last().is_some_and(|s| s.len == 0) {
            return Ok(());
        }
        let base_offset = self.next_offset();
        let path = segment_path(&self.dir, base_offset);
        self.active
            .sync_all()
            .map_err(io_err("syncing metadata log segment", &path))?;
        self.active = open_for_append(&path)?;
        sync_dir(&self.dir)?;
        self.segments.push(SegmentFile {
            base_offset,
            path,
            len: 0,
        });
        Ok(())
    }

    /// Drops the segments whose entries all lie at or before `offset` (covered by a snapshot at
    /// `offset`). The active segment stays. Returns how many entries were dropped.
    pub fn purge_through(&mut self, offset: i64) -> Result<usize, LogError> {
        let mut removable = 0;
        while removable + 1 < self.segments.len()
            && self.segments[removable + 1].base_offset <= offset + 1
        {
            removable += 1;
        }
        if removable == 0 {
            return Ok(0);
        }
        let new_first = self.segments[removable].base_offset;
        for segment in self.segments.drain(..removable) {
            fs::remove_file(&segment.path)
                .map_err(io_err("deleting metadata log segment", &segment.path))?;
        }
        sync_dir(&self.dir)?;
        let dropped = usize::try_from(new_first - self.first_offset).unwrap_or(0);
        if let Some(last_dropped) = dropped.checked_sub(1).and_then(|i| self.entries.get(i)) {
            self.epoch_before_first = last_dropped.epoch;
        }
        self.entries.drain(..dropped);
        self.positions.drain(..dropped);
        for position in &mut self.positions {
            position.0 -= removable;
        }
        self.first_offset = new_first;
        self.debug_check();
        Ok(dropped)
    }

    /// Discards the whole log and restarts it empty at `next_offset` with `last_epoch` as the epoch
    /// of the entry before it (a snapshot from the leader replaced everything this node had).
    pub fn reset(&mut self, next_offset: i64, last_epoch: i32) -> Result<(), LogError> {
        let path = segment_path(&self.dir, next_offset);
        let fresh = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err("creating metadata log segment", &path))?;
        for segment in self.segments.drain(..) {
            if segment.path != path {
                fs::remove_file(&segment.path)
                    .map_err(io_err("deleting metadata log segment", &segment.path))?;
            }
        }
        sync_dir(&self.dir)?;
        self.active = fresh;
        self.segments.push(SegmentFile {
            base_offset: next_offset,
            path,
            len: 0,
        });
        self.entries.clear();
        self.positions.clear();
        self.first_offset = next_offset;
        self.epoch_before_first = last_epoch;
        self.failed = false;
        Ok(())
    }

    /// Remembers the epoch of the entry just before the log start (known from a snapshot).
    pub fn set_epoch_before_first(&mut self, epoch: i32) {
        self.epoch_before_first = epoch;
    }

    fn check_usable(&self) -> Result<(), LogError> {
        if self.failed {
            return Err(LogError::Failed(self.dir.clone()));
        }
        Ok(())
    }

    fn debug_check(&self) {
        debug_assert_eq!(self.entries.len(), self.positions.len());
        debug_assert!(self
            .entries
            .iter()
            .zip(self.first_offset..)
            .all(|(entry, offset)| entry.offset == offset));
    }
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing directory", dir))
}

pub(crate) fn encode_entry(entry: &LogEntry) -> Result<Bytes, LogError> {
    let length = entry.encoded_len() - 4;
    if length > MAX_ENTRY_LEN {
        return Err(LogError::EntryTooLarge(length));
    }
    let mut buf = BytesMut::with_capacity(4 + length);
    buf.put_u32(length as u32);
    buf.put_u32(0); // crc, filled in below
    buf.put_i64(entry.offset);
    buf.put_i32(entry.epoch);
    buf.put_u32(entry.records.len() as u32);
    for record in &entry.records {
        buf.put_u32(record.len() as u32);
        buf.put_slice(record);
    }
    let crc = crc32c::crc32c(&buf[8..]);
    buf[4..8].copy_from_slice(&crc.to_be_bytes());
    Ok(buf.freeze())
}

/// What a scan of one segment found.
struct Scan {
    entries: Vec<LogEntry>,
    /// Length of the intact prefix.
    valid_len: usize,
    /// Whether an intact entry (valid checksum, an offset after the last good one) lies somewhere
    /// after the first damaged byte: then the damage is not a torn tail.
    intact_entry_after_damage: bool,
}

/// Parses the entries of a segment whose first entry must have offset `base_offset`.
fn scan_entries(data: Bytes, base_offset: i64) -> Scan {
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut position = 0;
    while let Some((entry, len)) = parse_entry_at(&data, position) {
        let expected = entries.last().map_or(base_offset, |e| e.offset + 1);
        if entry.offset != expected {
            break;
        }
        entries.push(entry);
        position += len;
    }
    let last_good = entries.last().map_or(base_offset - 1, |e| e.offset);
    let intact_entry_after_damage = position < data.len()
        && (position + 1..data.len().saturating_sub(ENTRY_HEADER_LEN - 1))
            .any(|at| parse_entry_at(&data, at).is_some_and(|(e, _)| e.offset > last_good));
    Scan {
        entries,
        valid_len: position,
        intact_entry_after_damage,
    }
}

/// The entry starting at byte `at` of `data` and its encoded length, if one is intact there.
pub(crate) fn parse_entry_at(data: &Bytes, at: usize) -> Option<(LogEntry, usize)> {
    let header = data.get(at..at + ENTRY_HEADER_LEN)?;
    let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if !(LENGTH_OVERHEAD + 4..=MAX_ENTRY_LEN).contains(&length) || data.len() - at < 4 + length {
        return None;
    }
    let stored_crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if crc32c::crc32c(&data[at + 8..at + 4 + length]) != stored_crc {
        return None;
    }
    let mut body = data.slice(at + 8..at + 4 + length);
    let offset = body.get_i64();
    let epoch = body.get_i32();
    let records = parse_payload(body)?;
    Some((
        LogEntry {
            offset,
            epoch,
            records,
        },
        4 + length,
    ))
}

fn parse_payload(mut payload: Bytes) -> Option<Vec<Bytes>> {
    if payload.remaining() < 4 {
        return None;
    }
    let count = payload.get_u32() as usize;
    let mut records = Vec::with_capacity(count.min(payload.remaining() / 4));
    for _ in 0..count {
        if payload.remaining() < 4 {
            return None;
        }
        let len = payload.get_u32() as usize;
        if payload.remaining() < len {
            return None;
        }
        records.push(payload.split_to(len));
    }
    payload.is_empty().then_some(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(parts: &[&'static [u8]]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::from_static(p)).collect()
    }

    fn first_segment(dir: &Path) -> PathBuf {
        segment_path(dir, 0)
    }

    #[test]
    fn appends_and_replays() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = MetadataLog::open(dir.path(), 0).unwrap();
            assert_eq!(log.next_offset(), 0);
            assert_eq!(log.append(1, records(&[b"a", b"bc"])).unwrap(), 0);
            assert_eq!(log.append(2, records(&[])).unwrap(), 1);
            assert_eq!(log.append(2, records(&[b"def"])).unwrap(), 2);
        }
        let log = MetadataLog::open(dir.path(), 0).unwrap();
        assert_eq!(log.next_offset(), 3);
        assert_eq!(log.last_epoch(), 2);
        let entries: Vec<_> = log.entries_from(0).cloned().collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].records, records(&[b"a", b"bc"]));
        assert_eq!(entries[1].records, records(&[]));
        assert_eq!(entries[2].epoch, 2);
    }

    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = first_segment(dir.path());
        {
            let mut log = MetadataLog::open(dir.path(), 0).unwrap();
            log.append(1, records(&[b"first"])).unwrap();
            log.append(1, records(&[b"second"])).unwrap();
        }
        let intact = fs::read(&path).unwrap();
        let first_len = ENTRY_HEADER_LEN + 4 + 4 + b"first".len();
        // Cut the second entry short, as a crash in the middle of its write would.
        fs::write(&path, &intact[..intact.len() - 3]).unwrap();
        {
            let mut log = MetadataLog::open(dir.path(), 0).unwrap();
            assert_eq!(log.next_offset(), 1);
            assert_eq!(fs::metadata(&path).unwrap().len() as usize, first_len);
            assert_eq!(log.append(1, records(&[b"third"])).unwrap(), 1);
        }
        let log = MetadataLog::open(dir.path(), 0).unwrap();
        assert_eq!(log.entry(1).unwrap().records, records(&[b"third"]));

        // A flipped byte in the last entry is indistinguishable from a torn write: dropped.
        let mut corrupt = fs::read(&path).unwrap();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        fs::write(&path, &corrupt).unwrap();
        let log = MetadataLog::open(dir.path(), 0).unwrap();
        assert_eq!(log.next_offset(), 1);
    }

    #[test]
    fn damage_followed_by_intact_entries_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = first_segment(dir.path());
        {
            let mut log = MetadataLog::open(dir.path(), 0).unwrap();
            for _ in 0..5 {
                log.append(1, records(&[b"some metadata record"])).unwrap();
            }
        }
        let mut bytes = fs::read(&path).unwrap();
        let entry_len = bytes.len() / 5;
        bytes[entry_len + ENTRY_HEADER_LEN + 6] ^= 0x01; // inside the second entry's payload
        fs::write(&path, &bytes).unwrap();
        let error = MetadataLog::open(dir.path(), 0).unwrap_err();
        assert!(
            matches!(
                error,
                LogError::Corrupt {
                    last_good_offset: 0,
                    ..
                }
            ),
            "{error}"
        );
        // The file is left as it was for the operator.
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn truncate_roll_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetadataLog::open(dir.path(), 0).unwrap();
        for epoch in [1, 1, 2] {
            log.append(epoch, records(&[b"x"])).unwrap();
        }
        log.roll().unwrap();
        for epoch in [2, 3, 3] {
            log.append(epoch, records(&[b"y"])).unwrap();
        }
        assert_eq!(log.next_offset(), 6);
        // Truncation across a segment boundary removes the later segment.
        log.truncate_from(2).unwrap();
        assert_eq!(log.next_offset(), 2);
        assert_eq!(log.last_epoch(), 1);
        assert!(!segment_path(dir.path(), 3).exists());
        log.append_entry(LogEntry {
            offset: 2,
            epoch: 4,
            records: records(&[b"z"]),
        })
        .unwrap();
        assert!(log
            .append_entry(LogEntry {
                offset: 7,
                epoch: 4,
                records: vec![],
            })
            .is_err());
        log.roll().unwrap();
        log.append(4, records(&[b"w"])).unwrap();
        // A snapshot at offset 2 covers the first segment (0..=2).
        assert_eq!(log.purge_through(2).unwrap(), 3);
        assert_eq!(log.first_offset(), 3);
        assert!(log.entry(2).is_none());
        drop(log);
        let log = MetadataLog::open(dir.path(), 0).unwrap();
        assert_eq!(log.first_offset(), 3);
        assert_eq!(log.next_offset(), 4);
        assert_eq!(log.entry(3).unwrap().records, records(&[b"w"]));
    }

    #[test]
    fn reset_restarts_after_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetadataLog::open(dir.path(), 0).unwrap();
        log.append(1, records(&[b"x"])).unwrap();
        log.reset(100, 7).unwrap();
        assert_eq!(log.next_offset(), 100);
        assert_eq!(log.last_epoch(), 7);
        log.append(8, records(&[b"y"])).unwrap();
        drop(log);
        let log = MetadataLog::open(dir.path(), 0).unwrap();
        assert_eq!(log.first_offset(), 100);
        assert_eq!(log.next_offset(), 101);
    }
}
