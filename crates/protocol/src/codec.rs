//! Wire primitives of the Kafka protocol: fixed-width integers, varints, strings, bytes, arrays and
//! tagged fields, in both their classic and "compact" (flexible-version) forms.
//!
//! Decoding is fallible and bounded by the bytes actually present: every length read from the wire is
//! checked against what remains in the buffer before anything is allocated, so a hostile length field
//! can never make us reserve more memory than the frame itself holds.
//!
//! Encoding writes into an [`Encoder`], which keeps record data (`records` fields) as shared [`Bytes`]
//! chunks instead of copying them, so a fetch response can be written with vectored I/O straight from
//! the log's buffers.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A Kafka UUID (topic ids, directory ids), as its 16 raw bytes.
pub type Uuid = [u8; 16];

/// Why a buffer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated input: needed {needed} more bytes, {remaining} remain")]
    Truncated { needed: usize, remaining: usize },
    #[error("invalid length {0}")]
    InvalidLength(i64),
    #[error("null value where the schema does not allow one")]
    UnexpectedNull,
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("varint is longer than its type allows")]
    VarintOverflow,
    #[error("unsupported version {version} of API key {api_key}")]
    UnsupportedVersion { api_key: i16, version: i16 },
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("invalid record batch: {0}")]
    InvalidRecords(&'static str),
}

pub type DecodeResult<T> = Result<T, DecodeError>;

/// A type that can be read from the wire at a given API version.
pub trait Decode: Sized {
    fn decode(buf: &mut Bytes, version: i16) -> DecodeResult<Self>;
}

/// A type that can be written to the wire at a given API version.
pub trait Encode {
    fn encode(&self, out: &mut Encoder, version: i16);
}

fn ensure(buf: &Bytes, needed: usize) -> DecodeResult<()> {
    if buf.remaining() < needed {
        Err(DecodeError::Truncated {
            needed,
            remaining: buf.remaining(),
        })
    } else {
        Ok(())
    }
}

pub fn get_i8(buf: &mut Bytes) -> DecodeResult<i8> {
    ensure(buf, 1)?;
    Ok(buf.get_i8())
}

pub fn get_bool(buf: &mut Bytes) -> DecodeResult<bool> {
    Ok(get_i8(buf)? != 0)
}

pub fn get_i16(buf: &mut Bytes) -> DecodeResult<i16> {
    ensure(buf, 2)?;
    Ok(buf.get_i16())
}

pub fn get_u16(buf: &mut Bytes) -> DecodeResult<u16> {
    ensure(buf, 2)?;
    Ok(buf.get_u16())
}

pub fn get_i32(buf: &mut Bytes) -> DecodeResult<i32> {
    ensure(buf, 4)?;
    Ok(buf.get_i32())
}

pub fn get_u32(buf: &mut Bytes) -> DecodeResult<u32> {
    ensure(buf, 4)?;
    Ok(buf.get_u32())
}

pub fn get_i64(buf: &mut Bytes) -> DecodeResult<i64> {
    ensure(buf, 8)?;
    Ok(buf.get_i64())
}

pub fn get_f64(buf: &mut Bytes) -> DecodeResult<f64> {
    ensure(buf, 8)?;
    Ok(buf.get_f64())
}

pub fn get_uuid(buf: &mut Bytes) -> DecodeResult<Uuid> {
    ensure(buf, 16)?;
    let mut id = [0u8; 16];
    buf.copy_to_slice(&mut id);
    Ok(id)
}

/// Unsigned LEB128 varint of at most 32 bits (lengths and tags in flexible versions).
pub fn get_uvarint(buf: &mut Bytes) -> DecodeResult<u32> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = get_i8(buf)? as u8;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(value).map_err(|_| DecodeError::VarintOverflow);
        }
    }
    Err(DecodeError::VarintOverflow)
}

/// Unsigned LEB128 varint of at most 64 bits.
pub fn get_uvarlong(buf: &mut Bytes) -> DecodeResult<u64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = get_i8(buf)? as u8;
        if shift == 63 && byte > 1 {
            return Err(DecodeError::VarintOverflow);
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::VarintOverflow)
}

/// Zig-zag signed varint (record fields).
pub fn get_varint(buf: &mut Bytes) -> DecodeResult<i32> {
    let raw = get_uvarint(buf)?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Zig-zag signed varlong (record fields).
pub fn get_varlong(buf: &mut Bytes) -> DecodeResult<i64> {
    let raw = get_uvarlong(buf)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Reads a length prefix: `None` for null, otherwise a length no larger than what remains.
///
/// Classic lengths are an `i16` (strings) or `i32` (bytes, arrays) with -1 for null; compact lengths
/// are a uvarint holding length + 1, with 0 for null.
fn get_length(buf: &mut Bytes, compact: bool, short: bool) -> DecodeResult<Option<usize>> {
    let len: i64 = if compact {
        i64::from(get_uvarint(buf)?) - 1
    } else if short {
        i64::from(get_i16(buf)?)
    } else {
        i64::from(get_i32(buf)?)
    };
    match len {
        -1 => Ok(None),
        n if n < -1 => Err(DecodeError::InvalidLength(n)),
        n => Ok(Some(n as usize)),
    }
}

fn get_sized_bytes(buf: &mut Bytes, len: usize) -> DecodeResult<Bytes> {
    ensure(buf, len)?;
    Ok(buf.split_to(len))
}

pub fn get_nullable_string(buf: &mut Bytes, compact: bool) -> DecodeResult<Option<String>> {
    match get_length(buf, compact, true)? {
        None => Ok(None),
        Some(len) => {
            let raw = get_sized_bytes(buf, len)?;
            String::from_utf8(raw.to_vec())
                .map(Some)
                .map_err(|_| DecodeError::InvalidUtf8)
        }
    }
}

pub fn get_string(buf: &mut Bytes, compact: bool) -> DecodeResult<String> {
    get_nullable_string(buf, compact)?.ok_or(DecodeError::UnexpectedNull)
}

pub fn get_nullable_bytes(buf: &mut Bytes, compact: bool) -> DecodeResult<Option<Bytes>> {
    match get_length(buf, compact, false)? {
        None => Ok(None),
        Some(len) => get_sized_bytes(buf, len).map(Some),
    }
}

pub fn get_bytes(buf: &mut Bytes, compact: bool) -> DecodeResult<Bytes> {
    get_nullable_bytes(buf, compact)?.ok_or(DecodeError::UnexpectedNull)
}

/// Reads a nullable array whose elements are decoded by `element`.
///
/// A count larger than the bytes remaining is refused before anything is decoded, as Kafka's
/// generated readers do: every element takes at least one byte on the wire, except elements of
/// a struct with no field at that version, and Kafka refuses such a count too. This also bounds
/// the loop, so a claimed count of `i32::MAX` costs no more than the frame holds.
pub fn get_nullable_array<T>(
    buf: &mut Bytes,
    compact: bool,
    mut element: impl FnMut(&mut Bytes) -> DecodeResult<T>,
) -> DecodeResult<Option<Vec<T>>> {
    match get_length(buf, compact, false)? {
        None => Ok(None),
        Some(count) => {
            ensure(buf, count)?;
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(element(buf)?);
            }
            Ok(Some(items))
        }
    }
}

pub fn get_array<T>(
    buf: &mut Bytes,
    compact: bool,
    element: impl FnMut(&mut Bytes) -> DecodeResult<T>,
) -> DecodeResult<Vec<T>> {
    get_nullable_array(buf, compact, element)?.ok_or(DecodeError::UnexpectedNull)
}

/// Reads the tagged-field section of a flexible-version struct, handing each field's tag and payload
/// to `field`; unknown tags are expected to be ignored by the caller.
pub fn get_tagged_fields(
    buf: &mut Bytes,
    mut field: impl FnMut(u32, Bytes) -> DecodeResult<()>,
) -> DecodeResult<()> {
    let count = get_uvarint(buf)?;
    for _ in 0..count {
        let tag = get_uvarint(buf)?;
        let size = get_uvarint(buf)? as usize;
        let payload = get_sized_bytes(buf, size)?;
        field(tag, payload)?;
    }
    Ok(())
}

/// Output buffer for encoding: owned bytes, interleaved with shared chunks for record data.
#[derive(Debug, Default)]
pub struct Encoder {
    chunks: Vec<Bytes>,
    current: BytesMut,
    len: usize,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Total number of bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn put_i8(&mut self, v: i8) {
        self.current.put_i8(v);
        self.len += 1;
    }

    pub fn put_bool(&mut self, v: bool) {
        self.put_i8(i8::from(v));
    }

    pub fn put_i16(&mut self, v: i16) {
        self.current.put_i16(v);
        self.len += 2;
    }

    pub fn put_u16(&mut self, v: u16) {
        self.current.put_u16(v);
        self.len += 2;
    }

    pub fn put_i32(&mut self, v: i32) {
        self.current.put_i32(v);
        self.len += 4;
    }

    pub fn put_u32(&mut self, v: u32) {
        self.current.put_u32(v);
        self.len += 4;
    }

    pub fn put_i64(&mut self, v: i64) {
        self.current.put_i64(v);
        self.len += 8;
    }

    pub fn put_f64(&mut self, v: f64) {
        self.current.put_f64(v);
        self.len += 8;
    }

    pub fn put_uuid(&mut self, v: &Uuid) {
        self.put_slice(v);
    }

    pub fn put_slice(&mut self, v: &[u8]) {
        self.current.put_slice(v);
        self.len += v.len();
    }

    pub fn put_uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.put_i8(((v & 0x7f) | 0x80) as u8 as i8);
            v >>= 7;
        }
        self.put_i8(v as u8 as i8);
    }

    pub fn put_uvarlong(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.put_i8(((v & 0x7f) | 0x80) as u8 as i8);
            v >>= 7;
        }
        self.put_i8(v as u8 as i8);
    }

    pub fn put_varint(&mut self, v: i32) {
        self.put_uvarint(((v << 1) ^ (v >> 31)) as u32);
    }

    pub fn put_varlong(&mut self, v: i64) {
        self.put_uvarlong(((v << 1) ^ (v >> 63)) as u64);
    }

    fn put_length(&mut self, len: Option<usize>, compact: bool, short: bool) {
        match (len, compact) {
            (None, true) => self.put_uvarint(0),
            (Some(n), true) => self.put_uvarint(n as u32 + 1),
            (None, false) if short => self.put_i16(-1),
            (None, false) => self.put_i32(-1),
            (Some(n), false) if short => self.put_i16(n as i16),
            (Some(n), false) => self.put_i32(n as i32),
        }
    }

    pub fn put_string(&mut self, v: &str, compact: bool) {
        self.put_length(Some(v.len()), compact, true);
        self.put_slice(v.as_bytes());
    }

    pub fn put_nullable_string(&mut self, v: Option<&str>, compact: bool) {
        match v {
            Some(s) => self.put_string(s, compact),
            None => self.put_length(None, compact, true),
        }
    }

    pub fn put_bytes(&mut self, v: &[u8], compact: bool) {
        self.put_length(Some(v.len()), compact, false);
        self.put_slice(v);
    }

    pub fn put_nullable_bytes(&mut self, v: Option<&[u8]>, compact: bool) {
        match v {
            Some(b) => self.put_bytes(b, compact),
            None => self.put_length(None, compact, false),
        }
    }

    /// Writes a `records` field: the length prefix is copied, the record data is shared, not copied.
    pub fn put_records(&mut self, v: Option<&Bytes>, compact: bool) {
        match v {
            None => self.put_length(None, compact, false),
            Some(records) => {
                self.put_length(Some(records.len()), compact, false);
                self.put_shared(records.clone());
            }
        }
    }

    /// Appends a shared chunk without copying it.
    pub fn put_shared(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        if chunk.len() < 256 {
            // Small chunks are cheaper to copy than to carry as a separate iovec.
            self.put_slice(&chunk);
            return;
        }
        if !self.current.is_empty() {
            self.chunks.push(self.current.split().freeze());
        }
        self.len += chunk.len();
        self.chunks.push(chunk);
    }

    /// Writes an array length prefix (`None` for a null array).
    pub fn put_array_len(&mut self, len: Option<usize>, compact: bool) {
        self.put_length(len, compact, false);
    }

    /// Appends everything another encoder wrote.
    pub fn append(&mut self, other: Encoder) {
        for chunk in other.into_chunks() {
            self.put_shared(chunk);
        }
    }

    /// Writes one tagged field whose payload is produced by `payload`.
    pub fn put_tagged_field(&mut self, tag: u32, payload: impl FnOnce(&mut Encoder)) {
        let mut inner = Encoder::new();
        payload(&mut inner);
        self.put_uvarint(tag);
        self.put_uvarint(inner.len() as u32);
        self.append(inner);
    }

    /// The encoded output as a list of chunks, in order.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.chunks.push(self.current.split().freeze());
        }
        self.chunks
    }

    /// The encoded output as one contiguous buffer (copies shared chunks; for tests and small messages).
    pub fn into_bytes(self) -> Bytes {
        let chunks = self.into_chunks();
        if chunks.len() == 1 {
            return chunks.into_iter().next().unwrap_or_default();
        }
        let mut all = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
        for chunk in chunks {
            all.put_slice(&chunk);
        }
        all.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut enc = Encoder::new();
            enc.put_varlong(v);
            let mut buf = enc.into_bytes();
            assert_eq!(get_varlong(&mut buf).unwrap(), v);
        }
        for v in [0u32, 1, 127, 128, 16383, 16384, u32::MAX] {
            let mut enc = Encoder::new();
            enc.put_uvarint(v);
            let mut buf = enc.into_bytes();
            assert_eq!(get_uvarint(&mut buf).unwrap(), v);
        }
    }

    #[test]
    fn hostile_array_length_does_not_allocate() {
        let mut buf = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]);
        let result = get_array(&mut buf, false, get_i64);
        assert!(matches!(result, Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn array_count_beyond_the_remaining_bytes_is_refused_up_front() {
        let mut calls = 0;
        let mut buf = Bytes::from_static(&[0, 0, 0, 5, 1, 2, 3, 4]);
        let result = get_array(&mut buf, false, |_| {
            calls += 1;
            Ok(())
        });
        assert!(matches!(result, Err(DecodeError::Truncated { .. })));
        assert_eq!(calls, 0);
        let mut buf = Bytes::from_static(&[0, 0, 0, 2, 1, 2]);
        assert_eq!(get_array(&mut buf, false, get_i8).unwrap(), vec![1, 2]);
    }

    #[test]
    fn hostile_string_length_is_refused() {
        let mut buf = Bytes::from_static(&[0x7f, 0xff, b'a']);
        assert!(get_string(&mut buf, false).is_err());
        let mut buf = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(get_string(&mut buf, true).is_err());
    }

    #[test]
    fn records_are_shared_not_copied() {
        let records = Bytes::from(vec![7u8; 1024]);
        let mut enc = Encoder::new();
        enc.put_i32(1);
        enc.put_records(Some(&records), false);
        let chunks = enc.into_chunks();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].as_ptr(), records.as_ptr());
    }
}
