//! Fuzz target: arbitrary bytes as a record batch. Validation, record decoding (with decompression
//! bounded at 1 MiB) and the timestamp lookup must yield a result or an error, never a panic.
//! Inputs long enough to hold a batch header get their length and CRC-32C fixed first, so that the
//! fuzzer reaches the record and decompression code instead of stopping at the checksum.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strom_protocol::records::{decode_records, first_offset_at_or_after_timestamp, split_batches};

fuzz_target!(|data: &[u8]| {
    let raw = Bytes::copy_from_slice(data);
    let _ = split_batches(&raw);
    let _ = decode_records(&raw, 1 << 20);

    let mut sealed = data.to_vec();
    if sealed.len() >= 61 {
        let batch_length = i32::try_from(sealed.len() - 12).unwrap_or(i32::MAX);
        sealed[8..12].copy_from_slice(&batch_length.to_be_bytes());
        sealed[16] = 2;
        let crc = crc32c_of(&sealed[21..]);
        sealed[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    let sealed = Bytes::from(sealed);
    let _ = decode_records(&sealed, 1 << 20);
    let _ = first_offset_at_or_after_timestamp(&sealed, 0);
});

/// CRC-32C (Castagnoli), bitwise: slow but dependency-free, fine for fuzz inputs.
fn crc32c_of(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
