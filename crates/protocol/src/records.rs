//! Kafka record batches (magic v2): the fixed batch header, validation (sizes, magic, CRC-32C) and the
//! in-place patches the broker makes on append (base offset, partition leader epoch, and the
//! LogAppendTime timestamp).
//!
//! Batches are kept as the producer sent them; nothing here copies record data.
//!
//! Layout of the v2 batch header (big-endian):
//! ```text
//! 0  baseOffset int64        8  batchLength int32       12 partitionLeaderEpoch int32
//! 16 magic int8              17 crc uint32 (CRC-32C of bytes 21..end)
//! 21 attributes int16        23 lastOffsetDelta int32   27 baseTimestamp int64
//! 35 maxTimestamp int64      43 producerId int64        51 producerEpoch int16
//! 53 baseSequence int32      57 recordCount int32       61 records...
//! ```

use bytes::Bytes;

use crate::codec::DecodeError;

/// Size of the batch header up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset + batchLength itself.
pub const LOG_OVERHEAD: usize = 12;
/// Where the CRC-covered part of a batch begins.
const CRC_START: usize = 21;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// Compression codec, from the low three bits of the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Batch attribute bits.
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub const ATTR_TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
pub const ATTR_CONTROL: i16 = 0x20;

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(raw)
}

/// The decoded fixed header of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `batch`, which must hold at least [`BATCH_HEADER_LEN`] bytes.
    pub fn parse(batch: &[u8]) -> Result<Self, DecodeError> {
        if batch.len() < BATCH_HEADER_LEN {
            return Err(DecodeError::InvalidRecords("batch shorter than its header"));
        }
        Ok(Self {
            base_offset: i64_at(batch, BASE_OFFSET_AT),
            batch_length: i32_at(batch, BATCH_LENGTH_AT),
            partition_leader_epoch: i32_at(batch, LEADER_EPOCH_AT),
            magic: batch[MAGIC_AT] as i8,
            crc: i32_at(batch, CRC_AT) as u32,
            attributes: i16_at(batch, ATTRIBUTES_AT),
            last_offset_delta: i32_at(batch, LAST_OFFSET_DELTA_AT),
            base_timestamp: i64_at(batch, BASE_TIMESTAMP_AT),
            max_timestamp: i64_at(batch, MAX_TIMESTAMP_AT),
            producer_id: i64_at(batch, PRODUCER_ID_AT),
            producer_epoch: i16_at(batch, PRODUCER_EPOCH_AT),
            base_sequence: i32_at(batch, BASE_SEQUENCE_AT),
            record_count: i32_at(batch, RECORD_COUNT_AT),
        })
    }

    /// Total size of the batch on the wire and on disk.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression(&self) -> Result<Compression, DecodeError> {
        match self.attributes & ATTR_COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            _ => Err(DecodeError::InvalidRecords("unknown compression codec")),
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// Reads the length of the batch starting at `data`, if enough of it is present to know.
pub fn peek_batch_len(data: &[u8]) -> Option<usize> {
    if data.len() < LOG_OVERHEAD {
        return None;
    }
    let len = i32_at(data, BATCH_LENGTH_AT);
    if len < 0 {
        return None;
    }
    Some(len as usize + LOG_OVERHEAD)
}

/// Checks one complete batch: header present, length consistent, magic 2, CRC-32C valid.
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader, DecodeError> {
    let header = BatchHeader::parse(batch)?;
    if header.magic != 2 {
        return Err(DecodeError::InvalidRecords("unsupported record batch magic"));
    }
    if header.batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 || header.total_len() != batch.len()
    {
        return Err(DecodeError::InvalidRecords("batch length does not match its data"));
    }
    if header.last_offset_delta < 0 || header.record_count < 0 {
        return Err(DecodeError::InvalidRecords("negative record count"));
    }
    header.compression()?;
    if crc32c::crc32c(&batch[CRC_START..]) != header.crc {
        return Err(DecodeError::InvalidRecords("CRC-32C mismatch"));
    }
    Ok(header)
}

/// Splits a `records` field into its batches, validating each one. A trailing partial batch is an
/// error (a producer never sends one).
pub fn split_batches(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, DecodeError> {
    let mut batches = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let len = peek_batch_len(&records[at..])
            .ok_or(DecodeError::InvalidRecords("truncated batch header"))?;
        if at + len > records.len() {
            return Err(DecodeError::InvalidRecords("batch longer than the records field"));
        }
        let batch = records.slice(at..at + len);
        let header = validate_batch(&batch)?;
        batches.push((header, batch));
        at += len;
    }
    Ok(batches)
}

/// Sets the base offset of a batch in place (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Sets the partition leader epoch of a batch in place (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks a batch as LogAppendTime with the given time as its max timestamp, and recomputes the CRC
/// (both fields lie inside it).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = i16_at(batch, ATTRIBUTES_AT) | ATTR_TIMESTAMP_TYPE_LOG_APPEND;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}
