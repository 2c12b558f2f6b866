//! One log segment: a `.log` file of record batches stored byte for byte as appended, a sparse
//! offset index (`.index`: relative offset u32, file position u32, big-endian) and a time index
//! (`.timeindex`: max timestamp so far i64, relative offset u32). File names are the segment's base
//! offset, zero padded to 20 digits, like Kafka's.
//!
//! The indexes are also held in memory; the files exist so that sealed segments open without a
//! scan. They are validated on open and rebuilt from the log when missing or inconsistent.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use strom_protocol::records::{
    decode_records, peek_batch_len, set_base_offset, set_partition_leader_epoch, validate_batch,
    BatchHeader, Compression, ATTR_TIMESTAMP_TYPE_LOG_APPEND, BATCH_HEADER_LEN,
    DEFAULT_MAX_DECOMPRESSED_BYTES, LOG_OVERHEAD,
};

use crate::error::{IoContext, StorageError, StorageResult};

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";

const OFFSET_ENTRY_LEN: usize = 8;
const TIME_ENTRY_LEN: usize = 12;

/// Extra suffix of the files of a segment written by the cleaner, not yet swapped in.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Extra suffix of the files of a cleaned segment being swapped in (the commit point of a swap).
pub(crate) const SWAP_SUFFIX: &str = ".swap";

/// Path of a segment file: `<dir>/<base offset, 20 digits><suffix><extra>`, where `extra` is
/// empty for a live segment, or [`CLEANED_SUFFIX`] or [`SWAP_SUFFIX`].
pub(crate) fn segment_file_with(
    dir: &Path,
    base_offset: i64,
    suffix: &str,
    extra: &str,
) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}{extra}"))
}

/// Deletes the three files of the segment at `base_offset` carrying the extra suffix `extra`
/// (files already missing are fine). The caller fsyncs the directory.
pub(crate) fn delete_segment_files(dir: &Path, base_offset: i64, extra: &str) -> StorageResult<()> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = segment_file_with(dir, base_offset, suffix, extra);
        match fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(StorageError::io(
                    format!("deleting {}", path.display()),
                    error,
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Fsyncs a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> StorageResult<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .context(|| format!("fsyncing directory {}", dir.display()))
}

/// Replaces `path` with `data` atomically: write `<path>.tmp`, fsync it, rename, fsync the dir.
pub(crate) fn write_file_atomically(path: &Path, data: &[u8]) -> StorageResult<()> {
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(".tmp");
    let temp = PathBuf::from(temp_name);
    let write = || -> io::Result<()> {
        let file = File::create(&temp)?;
        file.write_all_at(data, 0)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    };
    write().context(|| format!("writing {}", path.display()))?;
    match path.parent() {
        Some(dir) => fsync_dir(dir),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OffsetEntry {
    relative_offset: u32,
    position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeEntry {
    timestamp: i64,
    relative_offset: u32,
}

/// A batch found in a segment: its header and where it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocatedBatch {
    pub header: BatchHeader,
    pub position: u64,
}

/// One segment of a partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    dir: PathBuf,
    base_offset: i64,
    /// Extra suffix of the file names: empty for a live segment, [`CLEANED_SUFFIX`] or
    /// [`SWAP_SUFFIX`] for a cleaned copy on its way in.
    extra_suffix: &'static str,
    log: File,
    offset_index_file: File,
    time_index_file: File,
    /// Bytes of batches in the `.log` file.
    size: u64,
    /// Offset after the last batch (the base offset when empty).
    next_offset: i64,
    offset_index: Vec<OffsetEntry>,
    time_index: Vec<TimeEntry>,
    bytes_since_last_index_entry: usize,
    /// Largest batch max timestamp in the segment, -1 when none.
    max_timestamp: i64,
    /// Offset of the record carrying `max_timestamp`.
    offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch: what `segment.ms` is measured from (Kafka's rule).
    first_batch_timestamp: Option<i64>,
    /// Wall-clock time this segment was created or opened.
    created_ms: i64,
    /// Whether the log file has writes not yet fsynced.
    dirty: bool,
}

fn open_rw(path: &Path) -> StorageResult<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .context(|| format!("opening {}", path.display()))
}

impl Segment {
    fn open_files(dir: &Path, base_offset: i64, created_ms: i64) -> StorageResult<Self> {
        Self::open_files_with(dir, base_offset, created_ms, "")
    }

    fn open_files_with(
        dir: &Path,
        base_offset: i64,
        created_ms: i64,
        extra_suffix: &'static str,
    ) -> StorageResult<Self> {
        let path = |suffix: &str| segment_file_with(dir, base_offset, suffix, extra_suffix);
        let log_path = path(LOG_SUFFIX);
        let log = open_rw(&log_path)?;
        let size = log
            .metadata()
            .context(|| format!("reading size of {}", log_path.display()))?
            .len();
        Ok(Self {
            dir: dir.to_path_buf(),
            base_offset,
            extra_suffix,
            log,
            offset_index_file: open_rw(&path(INDEX_SUFFIX))?,
            time_index_file: open_rw(&path(TIME_INDEX_SUFFIX))?,
            size,
            next_offset: base_offset,
            offset_index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_last_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
            created_ms,
            dirty: false,
        })
    }

    /// Creates a new, empty segment (any leftover files with its name are emptied).
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> StorageResult<Self> {
        let segment = Self::create_with(dir, base_offset, now_ms, "")?;
        fsync_dir(dir)?;
        Ok(segment)
    }

    /// Creates the empty `.cleaned` files of a cleaned copy of the segment at `base_offset`. The
    /// directory is fsynced later, when the copy is swapped in.
    pub fn create_cleaned(dir: &Path, base_offset: i64, now_ms: i64) -> StorageResult<Self> {
        Self::create_with(dir, base_offset, now_ms, CLEANED_SUFFIX)
    }

    fn create_with(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        extra_suffix: &'static str,
    ) -> StorageResult<Self> {
        let mut segment = Self::open_files_with(dir, base_offset, now_ms, extra_suffix)?;
        for file in [
            &segment.log,
            &segment.offset_index_file,
            &segment.time_index_file,
        ] {
            file.set_len(0).context(|| segment.describe("emptying"))?;
        }
        segment.size = 0;
        Ok(segment)
    }

    /// Renames the segment's three files to carry `extra_suffix` instead of their current one:
    /// indexes first, the log last (the log's name is what recovery goes by). The open handles
    /// stay valid. The caller fsyncs the directory.
    pub fn rename_files(&mut self, extra_suffix: &'static str) -> StorageResult<()> {
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
            let from = segment_file_with(&self.dir, self.base_offset, suffix, self.extra_suffix);
            let to = segment_file_with(&self.dir, self.base_offset, suffix, extra_suffix);
            fs::rename(&from, &to)
                .context(|| format!("renaming {} to {}", from.display(), to.display()))?;
        }
        self.extra_suffix = extra_suffix;
        Ok(())
    }

    /// A second handle on the log file, for reading outside the partition lock (sealed segments
    /// never change; a deleted file stays readable through an open handle).
    pub fn clone_log_handle(&self) -> StorageResult<File> {
        self.log
            .try_clone()
            .context(|| self.describe("duplicating the handle of"))
    }

    /// Opens a sealed segment, trusting its indexes if they are consistent with the log file, and
    /// rebuilding them otherwise.
    pub fn open_sealed(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        index_interval: usize,
    ) -> StorageResult<Self> {
        let mut segment = Self::open_files(dir, base_offset, now_ms)?;
        if !segment.load_indexes()? {
            tracing::warn!(segment = %segment.describe("segment"), "index missing or invalid, rebuilding");
            let truncated = segment.rebuild(index_interval, false)?;
            if truncated > 0 {
                tracing::warn!(
                    segment = %segment.describe("segment"),
                    bytes = truncated,
                    "sealed segment ends in an invalid batch; ignoring its tail"
                );
            }
        }
        Ok(segment)
    }

    /// Opens the tail segment. After a clean shutdown (`trust_indexes`) its indexes are used like a
    /// sealed segment's when they check out. Otherwise every batch is validated (length, CRC), the
    /// file is cut at the first torn or corrupt one and the indexes are rebuilt. Returns the bytes
    /// truncated.
    pub fn open_recovering(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        index_interval: usize,
        trust_indexes: bool,
    ) -> StorageResult<(Self, u64)> {
        let mut segment = Self::open_files(dir, base_offset, now_ms)?;
        if trust_indexes && segment.load_indexes()? {
            return Ok((segment, 0));
        }
        let truncated = segment.rebuild(index_interval, true)?;
        Ok((segment, truncated))
    }

    fn describe(&self, what: &str) -> String {
        format!(
            "{what} {}",
            segment_file_with(&self.dir, self.base_offset, LOG_SUFFIX, self.extra_suffix).display()
        )
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// (largest timestamp, offset of that record), if the segment has a timestamped batch.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        (self.max_timestamp >= 0).then_some((self.max_timestamp, self.offset_of_max_timestamp))
    }

    /// Like [`Segment::max_timestamp`], with the offset exact as Kafka 3.8+ answers ListOffsets
    /// MAX_TIMESTAMP: the first record carrying the max timestamp. When that record lies in a
    /// compressed batch (whose offset is only known at batch level, see
    /// `offset_of_max_timestamp`), that one batch is read and decompressed.
    pub fn resolved_max_timestamp(&self) -> StorageResult<Option<(i64, i64)>> {
        let Some((timestamp, offset)) = self.max_timestamp() else {
            return Ok(None);
        };
        let Some(LocatedBatch { header, position }) = self.locate(offset)? else {
            return Ok(Some((timestamp, offset)));
        };
        if is_uncompressed(&header) || header.max_timestamp != timestamp {
            return Ok(Some((timestamp, offset)));
        }
        let batch = Bytes::from(self.read_bytes(position, header.total_len())?);
        let records = decode_records(&batch, DEFAULT_MAX_DECOMPRESSED_BYTES).map_err(|error| {
            StorageError::CorruptRecords(format!(
                "{} at position {position}: {error}",
                self.describe("batch of")
            ))
        })?;
        let exact = records
            .iter()
            .find(|record| record.timestamp(&header) == timestamp)
            .map_or(offset, |record| record.offset(&header));
        Ok(Some((timestamp, exact)))
    }

    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    pub fn first_batch_timestamp(&self) -> Option<i64> {
        self.first_batch_timestamp
    }

    fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset) as u32
    }

    /// Loads the index files and checks them against the log; computes the next offset by
    /// walking headers from the last offset index entry. False when anything is inconsistent.
    fn load_indexes(&mut self) -> StorageResult<bool> {
        let read = |file: &File, what: &str| -> StorageResult<Vec<u8>> {
            let len = file.metadata().context(|| self.describe(what))?.len();
            let mut data = vec![0u8; len as usize];
            file.read_exact_at(&mut data, 0)
                .context(|| self.describe(what))?;
            Ok(data)
        };
        let offset_data = read(&self.offset_index_file, "reading offset index of")?;
        let time_data = read(&self.time_index_file, "reading time index of")?;
        if offset_data.len() % OFFSET_ENTRY_LEN != 0 || time_data.len() % TIME_ENTRY_LEN != 0 {
            return Ok(false);
        }
        let offsets: Vec<OffsetEntry> = offset_data
            .chunks_exact(OFFSET_ENTRY_LEN)
            .map(|chunk| OffsetEntry {
                relative_offset: u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                position: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            })
            .collect();
        let times: Vec<TimeEntry> = time_data
            .chunks_exact(TIME_ENTRY_LEN)
            .map(|chunk| {
                let mut timestamp = [0u8; 8];
                timestamp.copy_from_slice(&chunk[..8]);
                TimeEntry {
                    timestamp: i64::from_be_bytes(timestamp),
                    relative_offset: u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
                }
            })
            .collect();
        let offsets_ok = offsets.windows(2).all(|pair| {
            pair[0].relative_offset < pair[1].relative_offset && pair[0].position < pair[1].position
        }) && offsets
            .last()
            .is_none_or(|last| u64::from(last.position) < self.size);
        let times_ok = times.windows(2).all(|pair| {
            pair[0].timestamp <= pair[1].timestamp
                && pair[0].relative_offset <= pair[1].relative_offset
        });
        if !offsets_ok || !times_ok || (self.size > 0 && times.is_empty()) {
            return Ok(false);
        }
        // Walk the headers after the last index entry to find the end offset.
        let start = offsets.last().map_or(0, |entry| u64::from(entry.position));
        let mut walker = HeaderWalker::new(self, start);
        let mut next_offset = self.base_offset;
        while let Some(batch) = walker.next_batch()? {
            next_offset = batch.header.last_offset() + 1;
        }
        if walker.position != self.size {
            return Ok(false);
        }
        if let Some(last_time) = times.last() {
            let offset = self.base_offset + i64::from(last_time.relative_offset);
            if offset >= next_offset {
                return Ok(false);
            }
            self.max_timestamp = last_time.timestamp;
            self.offset_of_max_timestamp = offset;
        }
        self.first_batch_timestamp = self.read_header_at(0)?.map(|header| header.max_timestamp);
        self.next_offset = next_offset;
        self.offset_index = offsets;
        self.time_index = times;
        Ok(true)
    }

    /// Reads the header of the batch at `position`; `None` if the file ends before the batch does
    /// or the header is implausible.
    pub fn read_header_at(&self, position: u64) -> StorageResult<Option<BatchHeader>> {
        if position + BATCH_HEADER_LEN as u64 > self.size {
            return Ok(None);
        }
        let mut raw = [0u8; BATCH_HEADER_LEN];
        self.log
            .read_exact_at(&mut raw, position)
            .context(|| self.describe("reading a batch header of"))?;
        Ok(self.plausible_header(&raw, position))
    }

    /// Parses a header read at `position` and checks it fits the segment.
    fn plausible_header(&self, raw: &[u8], position: u64) -> Option<BatchHeader> {
        let header = BatchHeader::parse(raw).ok()?;
        let plausible = header.batch_length >= (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32
            && position + header.total_len() as u64 <= self.size
            && header.last_offset_delta >= 0;
        plausible.then_some(header)
    }

    /// Rescans the whole log file, rebuilding the indexes and the end offset. With `validate`,
    /// every batch is read whole and checked (length, magic, CRC-32C); without, only headers are
    /// read except where a record offset is needed. The file is cut at the first invalid batch
    /// (only when `validate`); returns the bytes past the last valid batch.
    fn rebuild(&mut self, index_interval: usize, validate: bool) -> StorageResult<u64> {
        self.offset_index.clear();
        self.time_index.clear();
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        self.first_batch_timestamp = None;
        self.next_offset = self.base_offset;
        let mut position = 0u64;
        let mut buffer = Vec::new();
        while position < self.size {
            let mut length_prefix = [0u8; LOG_OVERHEAD];
            if position + LOG_OVERHEAD as u64 > self.size {
                break;
            }
            self.log
                .read_exact_at(&mut length_prefix, position)
                .context(|| self.describe("recovering"))?;
            let Some(len) = peek_batch_len(&length_prefix) else {
                break;
            };
            if len < BATCH_HEADER_LEN || position + len as u64 > self.size {
                break;
            }
            buffer.resize(len, 0);
            self.log
                .read_exact_at(&mut buffer, position)
                .context(|| self.describe("recovering"))?;
            let header = if validate {
                match validate_batch(&buffer) {
                    Ok(header) => header,
                    Err(_) => break,
                }
            } else {
                match BatchHeader::parse(&buffer) {
                    Ok(header) => header,
                    Err(_) => break,
                }
            };
            let offsets_fit = header.base_offset >= self.next_offset
                && header.last_offset_delta >= 0
                && header.last_offset() - self.base_offset <= i64::from(u32::MAX);
            if !offsets_fit {
                break;
            }
            self.index_batch(
                &header,
                position,
                &buffer[BATCH_HEADER_LEN..],
                index_interval,
            );
            position += len as u64;
        }
        let truncated = self.size - position;
        if truncated > 0 && validate {
            self.log
                .set_len(position)
                .context(|| self.describe("truncating torn tail of"))?;
            self.log.sync_all().context(|| self.describe("fsyncing"))?;
            self.size = position;
        }
        self.write_indexes()?;
        Ok(truncated)
    }

    /// Rewrites both index files from memory and fsyncs them.
    fn write_indexes(&mut self) -> StorageResult<()> {
        let mut offsets = Vec::with_capacity(self.offset_index.len() * OFFSET_ENTRY_LEN);
        for entry in &self.offset_index {
            offsets.extend_from_slice(&entry.relative_offset.to_be_bytes());
            offsets.extend_from_slice(&entry.position.to_be_bytes());
        }
        let mut times = Vec::with_capacity(self.time_index.len() * TIME_ENTRY_LEN);
        for entry in &self.time_index {
            times.extend_from_slice(&entry.timestamp.to_be_bytes());
            times.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        for (file, data) in [
            (&self.offset_index_file, offsets),
            (&self.time_index_file, times),
        ] {
            file.set_len(0)
                .and_then(|()| file.write_all_at(&data, 0))
                .and_then(|()| file.sync_all())
                .context(|| self.describe("writing indexes of"))?;
        }
        Ok(())
    }

    /// Updates in-memory state for a batch stored at `position` (`records`: the batch after its
    /// header); returns the index entries it created, for the caller to persist.
    fn index_batch(
        &mut self,
        header: &BatchHeader,
        position: u64,
        records: &[u8],
        index_interval: usize,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = offset_of_max_timestamp(header, records);
        }
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(header.max_timestamp);
        }
        let mut created = (None, None);
        if self.bytes_since_last_index_entry >= index_interval {
            let entry = OffsetEntry {
                relative_offset: self.relative(header.base_offset),
                position: position as u32,
            };
            self.offset_index.push(entry);
            created.0 = Some(entry);
            created.1 = self.maybe_add_time_entry();
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += header.total_len();
        self.next_offset = header.last_offset() + 1;
        created
    }

    /// Adds (max timestamp so far, its offset) to the time index if it moved forward.
    fn maybe_add_time_entry(&mut self) -> Option<TimeEntry> {
        if self.max_timestamp < 0
            || self
                .time_index
                .last()
                .is_some_and(|last| last.timestamp >= self.max_timestamp)
        {
            return None;
        }
        let entry = TimeEntry {
            timestamp: self.max_timestamp,
            relative_offset: self.relative(self.offset_of_max_timestamp),
        };
        self.time_index.push(entry);
        Some(entry)
    }

    fn persist_entries(
        &mut self,
        entries: (Option<OffsetEntry>, Option<TimeEntry>),
    ) -> StorageResult<()> {
        if let Some(entry) = entries.0 {
            let mut raw = [0u8; OFFSET_ENTRY_LEN];
            raw[..4].copy_from_slice(&entry.relative_offset.to_be_bytes());
            raw[4..].copy_from_slice(&entry.position.to_be_bytes());
            let at = ((self.offset_index.len() - 1) * OFFSET_ENTRY_LEN) as u64;
            self.offset_index_file
                .write_all_at(&raw, at)
                .context(|| self.describe("writing offset index of"))?;
        }
        if let Some(entry) = entries.1 {
            let mut raw = [0u8; TIME_ENTRY_LEN];
            raw[..8].copy_from_slice(&entry.timestamp.to_be_bytes());
            raw[8..].copy_from_slice(&entry.relative_offset.to_be_bytes());
            let at = ((self.time_index.len() - 1) * TIME_ENTRY_LEN) as u64;
            self.time_index_file
                .write_all_at(&raw, at)
                .context(|| self.describe("writing time index of"))?;
        }
        Ok(())
    }

    /// Appends `batches` at the end of the log file with one vectored write (their patched
    /// prefixes and the shared rest of each batch, no copy) and indexes them from their patched
    /// headers. On a write error the file is cut back to its old size.
    pub fn append(&mut self, batches: &[PatchedBatch], index_interval: usize) -> StorageResult<()> {
        let start = self.size;
        let buffers: Vec<&[u8]> = batches
            .iter()
            .flat_map(|batch| [&batch.prefix[..], &batch.rest[..]])
            .collect();
        if let Err(error) = write_all_vectored_at(&self.log, &buffers, start) {
            // Best effort: drop a partial write so the file still ends on a batch boundary.
            if let Err(cut) = self.log.set_len(start) {
                tracing::error!(error = %cut, "could not cut back a failed append");
            }
            return Err(StorageError::io(self.describe("appending to"), error));
        }
        self.size += batches.iter().map(|batch| batch.len() as u64).sum::<u64>();
        self.dirty = true;
        let mut position = start;
        for batch in batches {
            let entries =
                self.index_batch(&batch.header, position, batch.records(), index_interval);
            self.persist_entries(entries)?;
            position += batch.len() as u64;
        }
        Ok(())
    }

    /// Fsyncs the log file if it has unsynced writes.
    pub fn flush_log(&mut self) -> StorageResult<()> {
        if self.dirty {
            self.log.sync_data().context(|| self.describe("fsyncing"))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Makes the segment read-only-ready: writes the final time index entry (so the max timestamp
    /// survives a restart without a scan) and fsyncs the log and both indexes.
    pub fn seal(&mut self) -> StorageResult<()> {
        let entry = self.maybe_add_time_entry();
        self.persist_entries((None, entry))?;
        self.flush_log()?;
        for file in [&self.offset_index_file, &self.time_index_file] {
            file.sync_all()
                .context(|| self.describe("fsyncing indexes of"))?;
        }
        Ok(())
    }

    /// Finds the batch containing `offset` (the first batch whose last offset is >= `offset`).
    pub fn locate(&self, offset: i64) -> StorageResult<Option<LocatedBatch>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let relative = (offset - self.base_offset).max(0);
        let slot = self
            .offset_index
            .partition_point(|entry| i64::from(entry.relative_offset) <= relative);
        let position = match slot {
            0 => 0,
            n => u64::from(self.offset_index[n - 1].position),
        };
        let mut walker = HeaderWalker::new(self, position);
        while let Some(batch) = walker.next_batch()? {
            if batch.header.last_offset() >= offset {
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }

    /// Reads `len` bytes at `position` (clamped to the end of the segment).
    pub fn read_bytes(&self, position: u64, len: usize) -> StorageResult<Vec<u8>> {
        let len = len.min(self.size.saturating_sub(position) as usize);
        let mut data = vec![0u8; len];
        self.log
            .read_exact_at(&mut data, position)
            .context(|| self.describe("reading"))?;
        Ok(data)
    }

    /// Calls `visit` with the header of every batch from `position` to the end.
    pub fn for_each_header(
        &self,
        position: u64,
        mut visit: impl FnMut(&BatchHeader),
    ) -> StorageResult<()> {
        let mut walker = HeaderWalker::new(self, position);
        while let Some(batch) = walker.next_batch()? {
            visit(&batch.header);
        }
        Ok(())
    }

    /// The first record at or after `min_offset` with timestamp >= `timestamp`, as
    /// (offset, timestamp). See the crate docs for compressed batches.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> StorageResult<Option<(i64, i64)>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        // Entries strictly below the target guarantee that nothing up to their offset qualifies.
        let slot = self
            .time_index
            .partition_point(|entry| entry.timestamp < timestamp);
        let start_offset = match slot {
            0 => self.base_offset,
            n => self.base_offset + i64::from(self.time_index[n - 1].relative_offset),
        }
        .max(min_offset);
        let Some(start) = self.locate(start_offset)? else {
            return Ok(None);
        };
        let mut walker = HeaderWalker::new(self, start.position);
        while let Some(LocatedBatch { header, position }) = walker.next_batch()? {
            // Batches emptied by compaction hold no record to answer with.
            if header.record_count > 0
                && header.max_timestamp >= timestamp
                && header.last_offset() >= min_offset
            {
                let batch = self.read_bytes(position, header.total_len())?;
                if let Some(found) =
                    first_record_at_or_after(&header, &batch, timestamp, min_offset)
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// Removes every batch from the one containing `offset` onwards and rebuilds the indexes.
    pub fn truncate_from(&mut self, offset: i64, index_interval: usize) -> StorageResult<()> {
        let Some(cut) = self.locate(offset)? else {
            return Ok(());
        };
        self.log
            .set_len(cut.position)
            .and_then(|()| self.log.sync_all())
            .context(|| self.describe("truncating"))?;
        self.size = cut.position;
        self.rebuild(index_interval, false)?;
        Ok(())
    }

    /// Deletes the segment's files.
    pub fn delete(self) -> StorageResult<()> {
        delete_segment_files(&self.dir, self.base_offset, self.extra_suffix)
    }
}

/// Bytes of a batch the broker patches without touching the CRC: base offset (0..8), batch length
/// (8..12), partition leader epoch (12..16) and magic (16); the CRC starts right after and covers
/// only bytes 21.. of the batch.
const PATCHED_PREFIX_LEN: usize = 17;

/// A batch ready to be written: a patched copy of its first [`PATCHED_PREFIX_LEN`] bytes (new base
/// offset and partition leader epoch) and the rest of the batch shared with the buffer it came in,
/// so that an append copies no record data.
#[derive(Debug, Clone)]
pub(crate) struct PatchedBatch {
    prefix: [u8; PATCHED_PREFIX_LEN],
    rest: Bytes,
    /// The header as it will be on disk.
    header: BatchHeader,
}

impl PatchedBatch {
    /// `batch` (a validated v2 batch) as stored at `base_offset` under `leader_epoch`.
    pub fn new(batch: &Bytes, base_offset: i64, leader_epoch: i32) -> StorageResult<Self> {
        let mut stored = Self::unchanged(batch)?;
        set_base_offset(&mut stored.prefix, base_offset);
        set_partition_leader_epoch(&mut stored.prefix, leader_epoch);
        let mut raw_header = [0u8; BATCH_HEADER_LEN];
        raw_header[..PATCHED_PREFIX_LEN].copy_from_slice(&stored.prefix);
        raw_header[PATCHED_PREFIX_LEN..]
            .copy_from_slice(&batch[PATCHED_PREFIX_LEN..BATCH_HEADER_LEN]);
        stored.header = parse_header(&raw_header)?;
        Ok(stored)
    }

    /// `batch` stored as it is (a batch copied by the cleaner).
    pub fn unchanged(batch: &Bytes) -> StorageResult<Self> {
        let header = parse_header(batch)?;
        let mut prefix = [0u8; PATCHED_PREFIX_LEN];
        prefix.copy_from_slice(&batch[..PATCHED_PREFIX_LEN]);
        Ok(Self {
            prefix,
            rest: batch.slice(PATCHED_PREFIX_LEN..),
            header,
        })
    }

    /// Size of the batch on disk.
    pub fn len(&self) -> usize {
        PATCHED_PREFIX_LEN + self.rest.len()
    }

    /// The batch after its header (the records, possibly compressed).
    fn records(&self) -> &[u8] {
        &self.rest[BATCH_HEADER_LEN - PATCHED_PREFIX_LEN..]
    }
}

/// Parses the header at the start of `batch`, failing as corrupt records.
fn parse_header(batch: &[u8]) -> StorageResult<BatchHeader> {
    BatchHeader::parse(batch).map_err(|error| StorageError::CorruptRecords(error.to_string()))
}

/// Most buffers handed to one `pwritev` call (Linux's `UIO_MAXIOV`).
const MAX_IOVECS: usize = 1024;

/// Writes `buffers` back to back at `position` of `file` with `pwritev(2)`, looping over short
/// writes and retrying on `EINTR`, in calls of at most [`MAX_IOVECS`] buffers.
#[allow(unsafe_code)] // the `pwritev` call; see its SAFETY comment
fn write_all_vectored_at(file: &File, buffers: &[&[u8]], mut position: u64) -> io::Result<()> {
    // Index of the first buffer not yet wholly written, and how much of it is.
    let mut first = 0usize;
    let mut done_in_first = 0usize;
    let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(buffers.len().min(MAX_IOVECS));
    while first < buffers.len() {
        if done_in_first == buffers[first].len() {
            first += 1;
            done_in_first = 0;
            continue;
        }
        iovecs.clear();
        for (i, buffer) in buffers[first..].iter().take(MAX_IOVECS).enumerate() {
            let part = if i == 0 {
                &buffer[done_in_first..]
            } else {
                buffer
            };
            iovecs.push(libc::iovec {
                iov_base: part.as_ptr() as *mut libc::c_void,
                iov_len: part.len(),
            });
        }
        let offset = libc::off_t::try_from(position).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "file position beyond off_t")
        })?;
        // SAFETY: every iovec points into a slice of `buffers`, borrowed (so alive and unchanged)
        // for the whole call, with that slice's exact length; `pwritev` only reads them. The count
        // is at most MAX_IOVECS, well within c_int, and the descriptor belongs to `file`, which
        // is borrowed and therefore open.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iovecs.as_ptr(),
                iovecs.len() as libc::c_int,
                offset,
            )
        };
        if written < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if written == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "pwritev wrote nothing",
            ));
        }
        let mut written = written as usize;
        position += written as u64;
        while written > 0 && first < buffers.len() {
            let left_in_first = buffers[first].len() - done_in_first;
            if written >= left_in_first {
                written -= left_in_first;
                first += 1;
                done_in_first = 0;
            } else {
                done_in_first += written;
                written = 0;
            }
        }
    }
    Ok(())
}

/// How much of the log a header walk reads at once.
const WALK_CHUNK: usize = 16 * 1024;

/// Walks the batch headers of a segment from a position, reading the file in chunks rather than
/// one small read per header. Stops at the end of the segment or at an implausible header.
struct HeaderWalker<'a> {
    segment: &'a Segment,
    chunk: Vec<u8>,
    chunk_start: u64,
    /// Where the next batch starts.
    position: u64,
}

impl<'a> HeaderWalker<'a> {
    fn new(segment: &'a Segment, position: u64) -> Self {
        Self {
            segment,
            chunk: Vec::new(),
            chunk_start: 0,
            position,
        }
    }

    fn next_batch(&mut self) -> StorageResult<Option<LocatedBatch>> {
        let header_end = self.position + BATCH_HEADER_LEN as u64;
        if header_end > self.segment.size {
            return Ok(None);
        }
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if self.position < self.chunk_start || header_end > chunk_end {
            self.chunk = self.segment.read_bytes(self.position, WALK_CHUNK)?;
            self.chunk_start = self.position;
        }
        let at = (self.position - self.chunk_start) as usize;
        let raw = &self.chunk[at..at + BATCH_HEADER_LEN];
        let Some(header) = self.segment.plausible_header(raw, self.position) else {
            return Ok(None);
        };
        let located = LocatedBatch {
            header,
            position: self.position,
        };
        self.position += header.total_len() as u64;
        Ok(Some(located))
    }
}

/// Reads a zig-zag varint (up to 64 bits) from the front of `data`.
fn read_varlong(data: &mut &[u8]) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let (&byte, rest) = data.split_first()?;
        *data = rest;
        raw |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

/// (offset, timestamp) of each record of an uncompressed batch, stopping when `visit` says so.
/// `records` is the batch after its [`BATCH_HEADER_LEN`]-byte header. Only the leading fields of
/// each record are decoded; under LogAppendTime every record carries the batch's max timestamp.
/// Returns false if a record is malformed.
pub(crate) fn walk_records(
    header: &BatchHeader,
    records: &[u8],
    mut visit: impl FnMut(i64, i64) -> bool,
) -> bool {
    let mut rest = records;
    for _ in 0..header.record_count {
        let Some(length) = read_varlong(&mut rest) else {
            return false;
        };
        let Ok(length) = usize::try_from(length) else {
            return false;
        };
        let Some(mut record) = rest.get(..length) else {
            return false;
        };
        rest = &rest[length..];
        let Some((_attributes, fields)) = record.split_first() else {
            return false;
        };
        record = fields;
        let (Some(timestamp_delta), Some(offset_delta)) =
            (read_varlong(&mut record), read_varlong(&mut record))
        else {
            return false;
        };
        let timestamp = if is_log_append_time(header) {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        };
        if visit(header.base_offset.wrapping_add(offset_delta), timestamp) {
            return true;
        }
    }
    true
}

fn is_log_append_time(header: &BatchHeader) -> bool {
    header.attributes & ATTR_TIMESTAMP_TYPE_LOG_APPEND != 0
}

pub(crate) fn is_uncompressed(header: &BatchHeader) -> bool {
    matches!(header.compression(), Ok(Compression::None))
}

/// Where the record holding the batch's max timestamp is, as Kafka 3.8+ answers it (the first
/// record whose timestamp equals the max timestamp; under LogAppendTime every record has it, so the
/// first record). Uncompressed batches are walked here; compressed ones are not decompressed on
/// every append: their last offset stands for "somewhere in this batch" and
/// [`Segment::resolved_max_timestamp`] decompresses that one batch when ListOffsets asks.
/// `records` is the batch after its header.
fn offset_of_max_timestamp(header: &BatchHeader, records: &[u8]) -> i64 {
    if !is_uncompressed(header) {
        return header.last_offset();
    }
    let mut found = None;
    walk_records(header, records, |offset, timestamp| {
        if timestamp == header.max_timestamp {
            found = Some(offset);
            true
        } else {
            false
        }
    });
    found.unwrap_or_else(|| header.last_offset())
}

/// The first record of `batch` at or after `min_offset` with timestamp >= `target`. Compressed
/// batches answer with their first offset (>= `min_offset`) and their max timestamp; LogAppendTime
/// batches with that offset and the append time.
fn first_record_at_or_after(
    header: &BatchHeader,
    batch: &[u8],
    target: i64,
    min_offset: i64,
) -> Option<(i64, i64)> {
    let whole_batch = Some((header.base_offset.max(min_offset), header.max_timestamp));
    if is_log_append_time(header) {
        // Every record carries the batch's append time.
        return whole_batch;
    }
    if !is_uncompressed(header) {
        // Kafka decompresses to find the exact record; so do we (bounded like any decode).
        let batch = Bytes::copy_from_slice(batch);
        return match decode_records(&batch, DEFAULT_MAX_DECOMPRESSED_BYTES) {
            Ok(records) => records
                .iter()
                .map(|record| (record.offset(header), record.timestamp(header)))
                .find(|&(offset, timestamp)| offset >= min_offset && timestamp >= target),
            Err(_) => whole_batch,
        };
    }
    let mut found = None;
    let records = &batch[BATCH_HEADER_LEN.min(batch.len())..];
    let well_formed = walk_records(header, records, |offset, timestamp| {
        if offset >= min_offset && timestamp >= target {
            found = Some((offset, timestamp));
            true
        } else {
            false
        }
    });
    if well_formed {
        found
    } else {
        whole_batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectored_write_spans_many_calls_and_empty_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let file = open_rw(&dir.path().join("data")).unwrap();
        file.write_all_at(b"head", 0).unwrap();
        // More buffers than one pwritev call takes, some of them empty.
        let owned: Vec<Vec<u8>> = (0..3 * MAX_IOVECS + 7)
            .map(|i| vec![(i % 251) as u8; i % 5])
            .collect();
        let buffers: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        write_all_vectored_at(&file, &buffers, 4).unwrap();
        let expected: Vec<u8> = b"head".iter().copied().chain(owned.concat()).collect();
        let mut written = vec![0u8; expected.len()];
        file.read_exact_at(&mut written, 0).unwrap();
        assert_eq!(written, expected);
        assert_eq!(file.metadata().unwrap().len(), expected.len() as u64);
        write_all_vectored_at(&file, &[], 0).unwrap();
    }

    #[test]
    fn patched_batch_changes_only_offset_and_epoch() {
        let mut builder = strom_protocol::records::BatchBuilder::new(0, Compression::None, 1_000);
        builder.push(1_000, None, Some(Bytes::from_static(b"v")), Vec::new());
        builder.push(1_005, None, Some(Bytes::from_static(b"w")), Vec::new());
        let batch = builder.build();
        let patched = PatchedBatch::new(&batch, 77, 9).unwrap();
        assert_eq!(patched.len(), batch.len());
        let stored: Vec<u8> = patched
            .prefix
            .iter()
            .chain(patched.rest.iter())
            .copied()
            .collect();
        let header = validate_batch(&stored).unwrap();
        assert_eq!(header, patched.header);
        assert_eq!((header.base_offset, header.partition_leader_epoch), (77, 9));
        assert_eq!(stored[8..12], batch[8..12]);
        assert_eq!(stored[16..], batch[16..]);
        assert_eq!(patched.records(), &batch[BATCH_HEADER_LEN..]);
        let unchanged = PatchedBatch::unchanged(&batch).unwrap();
        assert_eq!(unchanged.header, BatchHeader::parse(&batch).unwrap());
        assert!(PatchedBatch::new(&batch.slice(..60), 0, 0).is_err());
    }
}
