//! Kafka record batches (magic v2): the fixed batch header, validation (sizes, magic, CRC-32C), the
//! in-place patches the broker makes on append (base offset, partition leader epoch, and the
//! LogAppendTime timestamp), and the record level: decoding the records of a batch (decompressing
//! within a bound) and building new batches with [`BatchBuilder`].
//!
//! Batches are kept as the producer sent them; the header functions never copy record data, and
//! the keys and values of decoded uncompressed records share the batch's buffer.
//!
//! Layout of the v2 batch header (big-endian):
//! ```text
//! 0  baseOffset int64        8  batchLength int32       12 partitionLeaderEpoch int32
//! 16 magic int8              17 crc uint32 (CRC-32C of bytes 21..end)
//! 21 attributes int16        23 lastOffsetDelta int32   27 baseTimestamp int64
//! 35 maxTimestamp int64      43 producerId int64        51 producerEpoch int16
//! 53 baseSequence int32      57 recordCount int32       61 records...
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{get_i16, get_i8, get_varint, get_varlong, DecodeError, Encoder};
use crate::compression::{compress, decompress, CompressError};

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
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
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

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE_LOG_APPEND != 0
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
        return Err(DecodeError::InvalidRecords(
            "unsupported record batch magic",
        ));
    }
    if header.batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32
        || header.total_len() != batch.len()
    {
        return Err(DecodeError::InvalidRecords(
            "batch length does not match its data",
        ));
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
            return Err(DecodeError::InvalidRecords(
                "batch longer than the records field",
            ));
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

/// Decompression bound used where the caller gives none ([`first_offset_at_or_after_timestamp`]):
/// batches read back from our own log were validated on append, this only stops a corrupt one from
/// exhausting memory.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 256 * 1024 * 1024;

/// Smallest possible encoded record: length, attributes, timestamp delta, offset delta, key length,
/// value length, header count, one byte each. Bounds the capacity reserved from a claimed count.
const MIN_RECORD_LEN: usize = 7;

/// One header of a record. Keys are UTF-8 (invalid sequences are replaced, as Java clients do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Option<Bytes>,
}

/// One record of a v2 batch; its offset and timestamp are relative to the batch's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

impl Record {
    /// The record's absolute offset in the batch described by `header`.
    pub fn offset(&self, header: &BatchHeader) -> i64 {
        header
            .base_offset
            .wrapping_add(i64::from(self.offset_delta))
    }

    /// The record's timestamp: the batch's max timestamp under LogAppendTime, otherwise its own
    /// (base timestamp + delta), as Kafka defines it.
    pub fn timestamp(&self, header: &BatchHeader) -> i64 {
        if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(self.timestamp_delta)
        }
    }
}

/// Turns "ran out of bytes" inside a record into what it means there: a malformed batch.
fn in_record(err: DecodeError) -> DecodeError {
    match err {
        DecodeError::Truncated { .. } => DecodeError::InvalidRecords("record truncated"),
        other => other,
    }
}

/// Reads a varint-length-prefixed byte field. Any negative length means null (-1 is what writers
/// use; Java's reader takes every negative length as null, so we do too).
fn get_varint_bytes(body: &mut Bytes) -> Result<Option<Bytes>, DecodeError> {
    let len = get_varint(body).map_err(in_record)?;
    let Ok(len) = usize::try_from(len) else {
        return Ok(None);
    };
    if len > body.len() {
        return Err(DecodeError::InvalidRecords(
            "record field longer than its record",
        ));
    }
    Ok(Some(body.split_to(len)))
}

/// Decodes one record from the front of `data`.
fn decode_record(data: &mut Bytes) -> Result<Record, DecodeError> {
    let len = get_varint(data).map_err(in_record)?;
    let len =
        usize::try_from(len).map_err(|_| DecodeError::InvalidRecords("negative record length"))?;
    if len > data.len() {
        return Err(DecodeError::InvalidRecords("record longer than its batch"));
    }
    let mut body = data.split_to(len);
    let _unused_attributes = get_i8(&mut body).map_err(in_record)?;
    let timestamp_delta = get_varlong(&mut body).map_err(in_record)?;
    let offset_delta = get_varint(&mut body).map_err(in_record)?;
    let key = get_varint_bytes(&mut body)?;
    let value = get_varint_bytes(&mut body)?;
    let header_count = get_varint(&mut body).map_err(in_record)?;
    let header_count = usize::try_from(header_count)
        .map_err(|_| DecodeError::InvalidRecords("negative header count"))?;
    let mut headers = Vec::with_capacity(header_count.min(body.len() / 2));
    for _ in 0..header_count {
        let key =
            get_varint_bytes(&mut body)?.ok_or(DecodeError::InvalidRecords("null header key"))?;
        let value = get_varint_bytes(&mut body)?;
        headers.push(RecordHeader {
            key: String::from_utf8_lossy(&key).into_owned(),
            value,
        });
    }
    if !body.is_empty() {
        return Err(DecodeError::InvalidRecords(
            "record length does not match its fields",
        ));
    }
    Ok(Record {
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers,
    })
}

/// Validates a batch (see [`validate_batch`]) and decodes all its records, decompressing them first
/// if the batch is compressed; decompression may yield at most `max_decompressed` bytes. The number
/// of records must match the header's count, and no bytes may follow the last one. Keys and values
/// of an uncompressed batch share its buffer.
pub fn decode_records(batch: &Bytes, max_decompressed: usize) -> Result<Vec<Record>, DecodeError> {
    let header = validate_batch(batch)?;
    decode_validated_records(batch, &header, max_decompressed)
}

fn decode_validated_records(
    batch: &Bytes,
    header: &BatchHeader,
    max_decompressed: usize,
) -> Result<Vec<Record>, DecodeError> {
    let payload = batch.slice(BATCH_HEADER_LEN..);
    let mut data = match header.compression()? {
        Compression::None => payload,
        codec => Bytes::from(decompress(codec, &payload, max_decompressed)?),
    };
    let count = usize::try_from(header.record_count)
        .map_err(|_| DecodeError::InvalidRecords("negative record count"))?;
    let mut records = Vec::with_capacity(count.min(data.len() / MIN_RECORD_LEN));
    for _ in 0..count {
        records.push(decode_record(&mut data)?);
    }
    if !data.is_empty() {
        return Err(DecodeError::InvalidRecords(
            "bytes after the last record of the batch",
        ));
    }
    Ok(records)
}

/// The first record of the batch whose timestamp is at or after `timestamp`, as (offset, timestamp),
/// the way Kafka answers ListOffsets by timestamp: a batch whose max timestamp is earlier is skipped
/// without decoding it. Compressed batches are decompressed within [`DEFAULT_MAX_DECOMPRESSED_BYTES`].
pub fn first_offset_at_or_after_timestamp(
    batch: &Bytes,
    timestamp: i64,
) -> Result<Option<(i64, i64)>, DecodeError> {
    let header = validate_batch(batch)?;
    if header.max_timestamp < timestamp {
        return Ok(None);
    }
    let records = decode_validated_records(batch, &header, DEFAULT_MAX_DECOMPRESSED_BYTES)?;
    Ok(records
        .iter()
        .map(|record| (record.offset(&header), record.timestamp(&header)))
        .find(|&(_, record_timestamp)| record_timestamp >= timestamp))
}

/// Why [`BatchBuilder::try_build`] could not build a batch.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Compress(#[from] CompressError),
    #[error("batch of {0} bytes exceeds the 2 GiB an i32 batch length can describe")]
    TooLarge(usize),
}

/// Builds a valid magic-v2 record batch: lengths, last offset delta, max timestamp and CRC-32C are
/// computed, records are compressed with the chosen codec.
///
/// ```
/// use bytes::Bytes;
/// use strom_protocol::records::{decode_records, validate_batch, BatchBuilder, Compression};
///
/// let mut builder = BatchBuilder::new(0, Compression::Zstd, 1_700_000_000_000);
/// builder.push(1_700_000_000_005, None, Some(Bytes::from_static(b"hello")), Vec::new());
/// let batch = builder.build();
/// assert_eq!(validate_batch(&batch).unwrap().max_timestamp, 1_700_000_000_005);
/// assert_eq!(decode_records(&batch, 1 << 20).unwrap()[0].value.as_deref(), Some(&b"hello"[..]));
/// ```
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_offset: i64,
    compression: Compression,
    base_timestamp: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    records: Vec<Record>,
}

impl BatchBuilder {
    /// A batch without producer id (-1), not transactional, not control, partition leader epoch -1.
    pub fn new(base_offset: i64, compression: Compression, base_timestamp: i64) -> Self {
        Self {
            base_offset,
            compression,
            base_timestamp,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
            records: Vec::new(),
        }
    }

    /// Sets the idempotent/transactional producer identity and the sequence of the first record.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    pub fn control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }

    /// Appends a record at the next offset (one past the previous record's, 0 for the first) with an
    /// absolute `timestamp`.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<RecordHeader>,
    ) -> &mut Self {
        let offset_delta = self
            .records
            .last()
            .map_or(0, |last| last.offset_delta.wrapping_add(1));
        self.records.push(Record {
            offset_delta,
            timestamp_delta: timestamp.wrapping_sub(self.base_timestamp),
            key,
            value,
            headers,
        });
        self
    }

    /// Appends a record with explicit deltas (offset deltas must increase, as after compaction).
    pub fn push_record(&mut self, record: Record) -> &mut Self {
        self.records.push(record);
        self
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Builds the batch. If the codec fails (only possible when zstd cannot allocate its context), the
    /// batch is written uncompressed, which every reader accepts.
    ///
    /// # Panics
    /// If the batch exceeds 2 GiB, which a batch length cannot describe; use [`Self::try_build`] for
    /// unbounded input.
    pub fn build(&self) -> Bytes {
        let built = match self.try_build() {
            Err(BuildError::Compress(_)) => self.assemble(Compression::None),
            other => other,
        };
        match built {
            Ok(batch) => batch,
            Err(err) => panic!("cannot build record batch: {err}"),
        }
    }

    /// Builds the batch, reporting compression failures and oversize batches.
    pub fn try_build(&self) -> Result<Bytes, BuildError> {
        self.assemble(self.compression)
    }

    fn assemble(&self, compression: Compression) -> Result<Bytes, BuildError> {
        let records = self.encode_records();
        let payload = match compression {
            Compression::None => records,
            codec => Bytes::from(compress(codec, &records)?),
        };
        let total_len = BATCH_HEADER_LEN + payload.len();
        let batch_length =
            i32::try_from(total_len - LOG_OVERHEAD).map_err(|_| BuildError::TooLarge(total_len))?;
        let record_count =
            i32::try_from(self.records.len()).map_err(|_| BuildError::TooLarge(total_len))?;
        let last_offset_delta = self
            .records
            .iter()
            .map(|r| r.offset_delta)
            .max()
            .unwrap_or(0);
        let max_timestamp = self
            .records
            .iter()
            .map(|r| self.base_timestamp.wrapping_add(r.timestamp_delta))
            .max()
            .unwrap_or(-1);
        let mut attributes = compression_attribute(compression);
        if self.transactional {
            attributes |= ATTR_TRANSACTIONAL;
        }
        if self.control {
            attributes |= ATTR_CONTROL;
        }

        let mut batch = BytesMut::with_capacity(total_len);
        batch.put_i64(self.base_offset);
        batch.put_i32(batch_length);
        batch.put_i32(self.partition_leader_epoch);
        batch.put_i8(2);
        batch.put_u32(0); // CRC, filled in below
        batch.put_i16(attributes);
        batch.put_i32(last_offset_delta);
        batch.put_i64(self.base_timestamp);
        batch.put_i64(max_timestamp);
        batch.put_i64(self.producer_id);
        batch.put_i16(self.producer_epoch);
        batch.put_i32(self.base_sequence);
        batch.put_i32(record_count);
        batch.put_slice(&payload);
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(batch.freeze())
    }

    /// The uncompressed records section: each record as a varint length followed by its body.
    fn encode_records(&self) -> Bytes {
        let mut out = Encoder::new();
        for record in &self.records {
            let mut body = Encoder::new();
            body.put_i8(0); // record attributes: unused
            body.put_varlong(record.timestamp_delta);
            body.put_varint(record.offset_delta);
            put_varint_bytes(&mut body, record.key.as_deref());
            put_varint_bytes(&mut body, record.value.as_deref());
            body.put_varint(varint_len(record.headers.len()));
            for header in &record.headers {
                put_varint_bytes(&mut body, Some(header.key.as_bytes()));
                put_varint_bytes(&mut body, header.value.as_deref());
            }
            out.put_varint(varint_len(body.len()));
            out.append(body);
        }
        out.into_bytes()
    }
}

/// A length as a record varint. Lengths beyond `i32::MAX` saturate; the batch they belong to is then
/// larger than 2 GiB and refused by [`BatchBuilder::try_build`].
fn varint_len(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

fn put_varint_bytes(out: &mut Encoder, value: Option<&[u8]>) {
    match value {
        None => out.put_varint(-1),
        Some(bytes) => {
            out.put_varint(varint_len(bytes.len()));
            out.put_slice(bytes);
        }
    }
}

fn compression_attribute(compression: Compression) -> i16 {
    match compression {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

/// Control record key type of a transaction end marker.
const CONTROL_TYPE_ABORT: i16 = 0;
const CONTROL_TYPE_COMMIT: i16 = 1;

/// A control batch holding one transaction end marker (COMMIT or ABORT), as the transaction
/// coordinator makes partition leaders write it: transactional, control, no base sequence; key
/// `[version 0 i16][type i16]`, value `[version 0 i16][coordinator epoch i32]`.
pub fn end_transaction_marker(
    base_offset: i64,
    timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
) -> Bytes {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(if commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    });
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(coordinator_epoch);
    let mut builder = BatchBuilder::new(base_offset, Compression::None, timestamp)
        .producer(producer_id, producer_epoch, -1)
        .transactional(true)
        .control(true);
    builder.push(
        timestamp,
        Some(key.freeze()),
        Some(value.freeze()),
        Vec::new(),
    );
    builder.build()
}

/// The type of a control record, from its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRecordType {
    /// Transaction end marker: abort.
    Abort,
    /// Transaction end marker: commit.
    Commit,
    /// Any other type (readers skip them, as Kafka does).
    Other(i16),
}

/// Reads the type of a record of a control batch from its key `[version i16][type i16]`.
pub fn control_record_type(record: &Record) -> Result<ControlRecordType, DecodeError> {
    let mut key = record
        .key
        .clone()
        .ok_or(DecodeError::InvalidRecords("control record without key"))?;
    let _version = get_i16(&mut key).map_err(in_record)?;
    Ok(match get_i16(&mut key).map_err(in_record)? {
        CONTROL_TYPE_ABORT => ControlRecordType::Abort,
        CONTROL_TYPE_COMMIT => ControlRecordType::Commit,
        other => ControlRecordType::Other(other),
    })
}
