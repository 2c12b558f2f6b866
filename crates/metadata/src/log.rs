//! The metadata log on disk: an append-only file of checksummed entries, each a batch of records
//! committed as a unit.
//!
//! # File format
//!
//! The log is the file `00000000000000000000.log` in the metadata directory (by convention
//! `<log.dir>/__cluster_metadata-0`, [`METADATA_LOG_DIR_NAME`]). It is a sequence of entries, all
//! integers big-endian:
//!
//! ```text
//! entry   := length:u32 crc:u32 offset:i64 epoch:i32 payload
//! payload := count:u32 (record_length:u32 record)*count
//! ```
//!
//! * `length` counts the bytes after itself (crc through the end of the payload).
//! * `crc` is CRC-32C of everything after itself (offset, epoch, payload).
//! * `offset` is the entry's index in the log: 0 for the first entry, then consecutive. One entry is
//!   one Raft log entry; `epoch` is the leader epoch (Raft term) that wrote it.
//! * each `record` is one metadata record serialized as Kafka's `MetadataRecordSerde` does
//!   (see [`crate::records`]); this module treats records as opaque bytes.
//!
//! An entry is written with one `write` and fsynced before [`MetadataLog::append`] returns, so an
//! acknowledged change is never lost. On open the file is scanned from the start; the first entry
//! that is incomplete, fails its checksum or breaks the offset sequence marks a torn tail (a crash in
//! the middle of an append): the file is truncated there, with a warning, and everything before it
//! is replayed.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Conventional name of the metadata directory inside a broker's log directory (Kafka's
/// `__cluster_metadata-0`); partition-log scans must skip it.
pub const METADATA_LOG_DIR_NAME: &str = "__cluster_metadata-0";
const LOG_FILE_NAME: &str = "00000000000000000000.log";
/// Bytes of an entry before its payload: length, crc, offset, epoch.
const ENTRY_HEADER_LEN: usize = 4 + 4 + 8 + 4;
/// Bytes covered by `length` besides the payload: crc, offset, epoch.
const LENGTH_OVERHEAD: usize = 4 + 8 + 4;
/// Upper bound of one entry, to refuse absurd lengths from a corrupt file before allocating.
const MAX_ENTRY_LEN: usize = 64 * 1024 * 1024;

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
    #[error("metadata log {0} is unusable after a failed append that could not be undone")]
    Failed(PathBuf),
}

/// One entry of the metadata log: a batch of serialized records committed together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub offset: i64,
    pub epoch: i32,
    pub records: Vec<Bytes>,
}

/// The append-only metadata log file.
#[derive(Debug)]
pub struct MetadataLog {
    path: PathBuf,
    file: File,
    next_offset: i64,
    last_epoch: i32,
    /// Length of the intact entries; a failed append is cut back to it.
    len: u64,
    /// Set when a failed append could not be undone; the log then refuses further appends.
    failed: bool,
}

impl MetadataLog {
    /// Opens (creating if needed) the log in the metadata directory `dir`, truncates a torn tail,
    /// and returns the log with every intact entry, in order.
    pub fn open(dir: &Path) -> Result<(Self, Vec<LogEntry>), LogError> {
        let io_err = |context, path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Io {
                context,
                path,
                source,
            }
        };
        let dir_existed = dir.is_dir();
        fs::create_dir_all(dir).map_err(io_err("creating metadata log directory", dir))?;
        if let Some(parent) = dir.parent().filter(|_| !dir_existed) {
            sync_dir(parent)?;
        }
        let path = dir.join(LOG_FILE_NAME);
        let file_existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("opening metadata log", &path))?;
        if !file_existed {
            sync_dir(dir)?;
        }
        let mut contents = Vec::new();
        file.read_to_end(&mut contents)
            .map_err(io_err("reading metadata log", &path))?;
        let file_len = contents.len();
        let (entries, valid_len) = scan_entries(Bytes::from(contents));
        if valid_len < file_len {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = valid_len,
                dropped_bytes = file_len - valid_len,
                "metadata log has a torn or corrupt tail; truncating it"
            );
            file.set_len(valid_len as u64)
                .and_then(|()| file.sync_all())
                .map_err(io_err("truncating metadata log", &path))?;
        }
        file.seek(SeekFrom::End(0))
            .map_err(io_err("seeking metadata log", &path))?;
        let next_offset = entries.last().map_or(0, |e| e.offset + 1);
        let last_epoch = entries.last().map_or(0, |e| e.epoch);
        let log = Self {
            path,
            file,
            next_offset,
            last_epoch,
            len: valid_len as u64,
            failed: false,
        };
        Ok((log, entries))
    }

    /// Offset the next appended entry gets.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Epoch of the last entry (0 for an empty log).
    pub fn last_epoch(&self) -> i32 {
        self.last_epoch
    }

    /// Appends one entry holding `records` at the next offset, fsyncs, and returns the entry's offset.
    ///
    /// If the write or fsync fails, the partial entry is cut off again so the log stays a clean
    /// sequence of entries; if even that fails, the log refuses all further appends.
    pub fn append(&mut self, epoch: i32, records: &[Bytes]) -> Result<i64, LogError> {
        if self.failed {
            return Err(LogError::Failed(self.path.clone()));
        }
        let offset = self.next_offset;
        let entry = encode_entry(offset, epoch, records)?;
        let written = self
            .file
            .write_all(&entry)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            let undone = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.seek(SeekFrom::Start(self.len)));
            self.failed = undone.is_err();
            return Err(LogError::Io {
                context: "appending to metadata log",
                path: self.path.clone(),
                source,
            });
        }
        self.len += entry.len() as u64;
        self.next_offset += 1;
        self.last_epoch = epoch;
        Ok(offset)
    }
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| LogError::Io {
            context: "syncing directory",
            path: dir.to_path_buf(),
            source,
        })
}

fn encode_entry(offset: i64, epoch: i32, records: &[Bytes]) -> Result<Bytes, LogError> {
    let payload_len = 4 + records.iter().map(|r| 4 + r.len()).sum::<usize>();
    let length = LENGTH_OVERHEAD + payload_len;
    if length > MAX_ENTRY_LEN {
        return Err(LogError::EntryTooLarge(length));
    }
    let mut buf = BytesMut::with_capacity(4 + length);
    buf.put_u32(length as u32);
    buf.put_u32(0); // crc, filled in below
    buf.put_i64(offset);
    buf.put_i32(epoch);
    buf.put_u32(records.len() as u32);
    for record in records {
        buf.put_u32(record.len() as u32);
        buf.put_slice(record);
    }
    let crc = crc32c::crc32c(&buf[8..]);
    buf[4..8].copy_from_slice(&crc.to_be_bytes());
    Ok(buf.freeze())
}

/// Parses entries from the start of `data`; returns them and the length of the intact prefix.
fn scan_entries(mut data: Bytes) -> (Vec<LogEntry>, usize) {
    let total = data.len();
    let mut entries = Vec::new();
    while data.remaining() >= ENTRY_HEADER_LEN {
        let length = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if !(LENGTH_OVERHEAD + 4..=MAX_ENTRY_LEN).contains(&length) || data.remaining() < 4 + length
        {
            break;
        }
        let stored_crc = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        if crc32c::crc32c(&data[8..4 + length]) != stored_crc {
            break;
        }
        let mut body = data.slice(8..4 + length);
        let offset = body.get_i64();
        let epoch = body.get_i32();
        let expected_offset = entries.last().map_or(0, |e: &LogEntry| e.offset + 1);
        if offset != expected_offset {
            break;
        }
        let Some(records) = parse_payload(body) else {
            break;
        };
        entries.push(LogEntry {
            offset,
            epoch,
            records,
        });
        data.advance(4 + length);
    }
    (entries, total - data.remaining())
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

    #[test]
    fn appends_and_replays() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, entries) = MetadataLog::open(dir.path()).unwrap();
            assert!(entries.is_empty());
            assert_eq!(log.append(1, &records(&[b"a", b"bc"])).unwrap(), 0);
            assert_eq!(log.append(2, &records(&[])).unwrap(), 1);
            assert_eq!(log.append(2, &records(&[b"def"])).unwrap(), 2);
        }
        let (log, entries) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(log.next_offset(), 3);
        assert_eq!(log.last_epoch(), 2);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].records, records(&[b"a", b"bc"]));
        assert_eq!(entries[1].records, records(&[]));
        assert_eq!(entries[2].epoch, 2);
    }

    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE_NAME);
        {
            let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
            log.append(1, &records(&[b"first"])).unwrap();
            log.append(1, &records(&[b"second"])).unwrap();
        }
        let intact = fs::read(&path).unwrap();
        let first_len = ENTRY_HEADER_LEN + 4 + 4 + b"first".len();
        // Cut the second entry short, as a crash in the middle of its write would.
        fs::write(&path, &intact[..intact.len() - 3]).unwrap();
        {
            let (mut log, entries) = MetadataLog::open(dir.path()).unwrap();
            assert_eq!(entries.len(), 1);
            assert_eq!(fs::metadata(&path).unwrap().len() as usize, first_len);
            assert_eq!(log.append(1, &records(&[b"third"])).unwrap(), 1);
        }
        let (_, entries) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].records, records(&[b"third"]));

        // A flipped byte fails the checksum and is dropped with everything after it.
        let mut corrupt = fs::read(&path).unwrap();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        fs::write(&path, &corrupt).unwrap();
        let (log, entries) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(log.next_offset(), 1);
    }
}
