//! Test helpers: building valid magic v2 record batches with uncompressed records.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use bytes::Bytes;

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Describes a batch to build.
#[derive(Clone, Debug)]
pub struct BatchSpec {
    pub values: Vec<Vec<u8>>,
    pub timestamps: Vec<i64>,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchSpec {
    /// `count` records with values `"<prefix>-<i>"` and timestamps `base_timestamp + i`.
    pub fn new(prefix: &str, count: usize, base_timestamp: i64) -> Self {
        Self {
            values: (0..count)
                .map(|i| format!("{prefix}-{i}").into_bytes())
                .collect(),
            timestamps: (0..count).map(|i| base_timestamp + i as i64).collect(),
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }

    pub fn idempotent(mut self, producer_id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn build(&self) -> Bytes {
        let base_timestamp = self.timestamps.iter().copied().min().unwrap_or(0);
        let max_timestamp = self.timestamps.iter().copied().max().unwrap_or(0);
        let mut records = Vec::new();
        for (i, value) in self.values.iter().enumerate() {
            let mut body = vec![0u8]; // attributes
            put_varint(&mut body, self.timestamps[i] - base_timestamp);
            put_varint(&mut body, i as i64);
            put_varint(&mut body, -1); // null key
            put_varint(&mut body, value.len() as i64);
            body.extend_from_slice(value);
            put_varint(&mut body, 0); // no headers
            put_varint(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let count = self.values.len() as i32;
        let mut batch = Vec::new();
        batch.extend_from_slice(&0i64.to_be_bytes());
        batch.extend_from_slice(&0i32.to_be_bytes()); // length, patched below
        batch.extend_from_slice(&(-1i32).to_be_bytes());
        batch.push(2);
        batch.extend_from_slice(&0u32.to_be_bytes()); // crc, patched below
        batch.extend_from_slice(&0i16.to_be_bytes());
        batch.extend_from_slice(&(count - 1).to_be_bytes());
        batch.extend_from_slice(&base_timestamp.to_be_bytes());
        batch.extend_from_slice(&max_timestamp.to_be_bytes());
        batch.extend_from_slice(&self.producer_id.to_be_bytes());
        batch.extend_from_slice(&self.producer_epoch.to_be_bytes());
        batch.extend_from_slice(&self.base_sequence.to_be_bytes());
        batch.extend_from_slice(&count.to_be_bytes());
        batch.extend_from_slice(&records);
        let length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(batch)
    }
}

/// A simple batch of `count` records.
pub fn batch(prefix: &str, count: usize, base_timestamp: i64) -> Bytes {
    BatchSpec::new(prefix, count, base_timestamp).build()
}

/// A decoded record: (offset, timestamp, value).
pub type Record = (i64, i64, Vec<u8>);

fn get_varint(data: &[u8], at: &mut usize) -> i64 {
    let mut raw = 0u64;
    let mut shift = 0;
    loop {
        let byte = data[*at];
        *at += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// Decodes every record of a fetch response's `records` bytes (uncompressed batches only), checking
/// each batch's CRC.
pub fn decode_records(data: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let header = strom_protocol::records::BatchHeader::parse(&data[at..]).unwrap();
        let end = at + header.total_len();
        strom_protocol::records::validate_batch(&data[at..end]).unwrap();
        let log_append = header.attributes & 0x08 != 0;
        let mut pos = at + 61;
        for _ in 0..header.record_count {
            let length = get_varint(data, &mut pos) as usize;
            let record_end = pos + length;
            pos += 1;
            let timestamp_delta = get_varint(data, &mut pos);
            let offset_delta = get_varint(data, &mut pos);
            let key_length = get_varint(data, &mut pos);
            if key_length > 0 {
                pos += key_length as usize;
            }
            let value_length = get_varint(data, &mut pos) as usize;
            let value = data[pos..pos + value_length].to_vec();
            let timestamp = if log_append {
                header.max_timestamp
            } else {
                header.base_timestamp + timestamp_delta
            };
            out.push((header.base_offset + offset_delta, timestamp, value));
            pos = record_end;
        }
        at = end;
    }
    out
}

/// The leader append of a single-node broker: the data is committed at once, so the high watermark
/// moves to the log end right after it (as the broker's produce path does).
pub trait CommittedAppend {
    fn append_committed(
        &mut self,
        records: &Bytes,
        leader_epoch: i32,
        now_ms: i64,
    ) -> strom_storage::StorageResult<strom_storage::AppendOutcome>;
}

impl CommittedAppend for strom_storage::PartitionLog {
    fn append_committed(
        &mut self,
        records: &Bytes,
        leader_epoch: i32,
        now_ms: i64,
    ) -> strom_storage::StorageResult<strom_storage::AppendOutcome> {
        let outcome = self.append(records, leader_epoch, now_ms)?;
        self.update_high_watermark(self.log_end_offset());
        Ok(outcome)
    }
}
