//! Compression codecs of record batches: gzip, snappy, lz4 and zstd, in the exact stream formats
//! Kafka clients and brokers exchange.
//!
//! - gzip: an RFC 1952 stream (concatenated members are accepted, as Java's `GZIPInputStream` does).
//! - snappy: decompression accepts both the xerial framing Kafka's Java client writes
//!   (`\x82SNAPPY\x00`, version, compatible version, then `[length i32][raw snappy block]*`) and the
//!   unframed raw snappy librdkafka writes. Compression emits the xerial framing with 32 KiB blocks,
//!   byte-compatible with Java's `SnappyOutputStream`, which is what a Kafka broker writes when it
//!   recompresses; every client reads it.
//! - lz4: the standard LZ4 frame format. We write what Kafka's `KafkaLZ4BlockOutputStream` writes:
//!   independent 64 KiB blocks and no checksums (Java refuses linked blocks).
//! - zstd: a standard zstd stream, written at level 3 (Kafka's default).
//!
//! Decompression is bounded by a caller-supplied `max_output`: a few kilobytes of hostile input can
//! otherwise expand to gigabytes (a decompression bomb), so exceeding the bound is an error, and no
//! buffer larger than the bound is ever reserved.

use std::io::{Read, Write};

use crate::codec::DecodeError;
use crate::records::Compression;

/// The header Java's xerial `SnappyOutputStream` writes before its blocks.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// Magic, then the stream version and the minimum compatible version (both 1).
const XERIAL_HEADER_LEN: usize = 16;
const XERIAL_VERSION: i32 = 1;
/// Uncompressed size of each block `SnappyOutputStream` writes by default.
const XERIAL_BLOCK_SIZE: usize = 32 * 1024;
/// Kafka's default zstd compression level.
const ZSTD_LEVEL: i32 = 3;

/// Why data could not be compressed.
#[derive(Debug, thiserror::Error)]
#[error("{codec:?} compression failed: {source}")]
pub struct CompressError {
    pub codec: Compression,
    #[source]
    pub source: std::io::Error,
}

/// Compresses `data` with `codec` into the stream format Kafka expects in a record batch.
/// [`Compression::None`] returns the data unchanged.
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, CompressError> {
    let wrap = |source: std::io::Error| CompressError { codec, source };
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 2),
                flate2::Compression::default(),
            );
            encoder.write_all(data).map_err(wrap)?;
            encoder.finish().map_err(wrap)
        }
        Compression::Snappy => compress_xerial_snappy(data).map_err(wrap),
        Compression::Lz4 => {
            let frame = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(
                frame,
                Vec::with_capacity(data.len() / 2),
            );
            encoder.write_all(data).map_err(wrap)?;
            encoder.finish().map_err(|err| wrap(err.into()))
        }
        Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL).map_err(wrap),
    }
}

fn compress_xerial_snappy(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + data.len() / 2);
    out.extend_from_slice(XERIAL_MAGIC);
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for block in data.chunks(XERIAL_BLOCK_SIZE) {
        let compressed = encoder.compress_vec(block)?;
        let len = i32::try_from(compressed.len())
            .map_err(|_| std::io::Error::other("snappy block longer than i32::MAX"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(out)
}

/// Decompresses a record batch's compressed records with `codec`, failing if the output would exceed
/// `max_output` bytes or the input is not a valid stream of that codec. Never panics on hostile input.
pub fn decompress(
    codec: Compression,
    data: &[u8],
    max_output: usize,
) -> Result<Vec<u8>, DecodeError> {
    match codec {
        Compression::None => {
            if data.len() > max_output {
                return Err(too_large());
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => read_bounded(
            flate2::read::MultiGzDecoder::new(data),
            max_output,
            "corrupt gzip data",
        ),
        Compression::Snappy => decompress_snappy(data, max_output),
        Compression::Lz4 => read_bounded(
            lz4_flex::frame::FrameDecoder::new(data),
            max_output,
            "corrupt lz4 frame",
        ),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|_| DecodeError::InvalidRecords("cannot start a zstd decoder"))?;
            read_bounded(decoder, max_output, "corrupt zstd data")
        }
    }
}

fn too_large() -> DecodeError {
    DecodeError::InvalidRecords("decompressed records exceed the size limit")
}

/// Reads `reader` to its end, failing once more than `max_output` bytes come out.
fn read_bounded(
    reader: impl Read,
    max_output: usize,
    corrupt: &'static str,
) -> Result<Vec<u8>, DecodeError> {
    let limit = u64::try_from(max_output)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut out = Vec::new();
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::InvalidRecords(corrupt))?;
    if out.len() > max_output {
        return Err(too_large());
    }
    Ok(out)
}

fn decompress_snappy(data: &[u8], max_output: usize) -> Result<Vec<u8>, DecodeError> {
    if !data.starts_with(XERIAL_MAGIC) {
        let mut out = Vec::new();
        decompress_raw_snappy_into(data, max_output, &mut out)?;
        return Ok(out);
    }
    if data.len() < XERIAL_HEADER_LEN {
        return Err(DecodeError::InvalidRecords(
            "truncated xerial snappy header",
        ));
    }
    let mut rest = &data[XERIAL_HEADER_LEN..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len_bytes, after) =
            rest.split_first_chunk::<4>()
                .ok_or(DecodeError::InvalidRecords(
                    "truncated xerial snappy block length",
                ))?;
        let len = usize::try_from(i32::from_be_bytes(*len_bytes))
            .map_err(|_| DecodeError::InvalidRecords("negative xerial snappy block length"))?;
        if len > after.len() {
            return Err(DecodeError::InvalidRecords(
                "xerial snappy block longer than its data",
            ));
        }
        let (block, after_block) = after.split_at(len);
        decompress_raw_snappy_into(block, max_output, &mut out)?;
        rest = after_block;
    }
    Ok(out)
}

/// Appends the raw snappy block's content to `out`, checking its declared size against the bound
/// before reserving anything.
fn decompress_raw_snappy_into(
    block: &[u8],
    max_output: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let declared = snap::raw::decompress_len(block)
        .map_err(|_| DecodeError::InvalidRecords("corrupt snappy block header"))?;
    let start = out.len();
    if declared > max_output.saturating_sub(start) {
        return Err(too_large());
    }
    out.resize(start + declared, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|_| DecodeError::InvalidRecords("corrupt snappy data"))?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn every_codec_round_trips() {
        for codec in CODECS {
            for len in [
                0,
                1,
                100,
                XERIAL_BLOCK_SIZE,
                3 * XERIAL_BLOCK_SIZE + 5,
                200_000,
            ] {
                let data = sample(len);
                let compressed = compress(codec, &data).unwrap();
                let back = decompress(codec, &compressed, len).unwrap();
                assert_eq!(back, data, "{codec:?} len {len}");
            }
        }
    }

    #[test]
    fn output_bound_is_enforced() {
        for codec in CODECS {
            let data = vec![0u8; 100_000];
            let compressed = compress(codec, &data).unwrap();
            assert_eq!(
                decompress(codec, &compressed, 99_999),
                Err(too_large()),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn snappy_accepts_raw_blocks_as_librdkafka_sends() {
        let data = sample(70_000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, data.len()).unwrap(),
            data
        );
    }

    #[test]
    fn snappy_emits_xerial_framing() {
        let compressed = compress(Compression::Snappy, b"hello").unwrap();
        assert_eq!(&compressed[..8], XERIAL_MAGIC);
        assert_eq!(&compressed[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn lz4_frame_has_kafka_flags() {
        let compressed = compress(Compression::Lz4, b"hello").unwrap();
        assert_eq!(&compressed[..4], &[0x04, 0x22, 0x4d, 0x18]);
        // FLG: version 01, independent blocks, no checksums, no content size. BD: 64 KiB blocks.
        assert_eq!(compressed[4], 0b0110_0000);
        assert_eq!(compressed[5], 0x40);
    }

    #[test]
    fn garbage_is_an_error() {
        for codec in CODECS[1..].iter().copied() {
            assert!(decompress(
                codec,
                b"\x82SNAPPY\x00\0\0\0\x01\0\0\0\x01\x7f\xff\xff\xff",
                1 << 20
            )
            .is_err());
            assert!(
                decompress(codec, &[0xff; 64], 1 << 20).is_err(),
                "{codec:?}"
            );
        }
    }
}
