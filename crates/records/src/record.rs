//! Records inside a v2 batch: decoding them (for compaction, the CLI and SQL) and building
//! batches (for clients and tests).

use bytes::Bytes;

use crate::batch::{BATCH_HEADER_BYTES, BatchError, BatchHeader, MAGIC_V2};
use crate::compression::{Compression, CompressionError};
use crate::varint::{read_varint, read_varlong, varlong_len, write_varlong};

/// One header of a record: a string key and optional bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Option<Bytes>,
}

/// A decoded record with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

impl Record {
    /// A record to build into a batch; offset and timestamp are set by [`BatchBuilder`] or
    /// with [`Record::at`].
    pub fn new(key: Option<impl Into<Bytes>>, value: Option<impl Into<Bytes>>) -> Record {
        Record { offset: 0, timestamp: 0, key: key.map(Into::into), value: value.map(Into::into), headers: Vec::new() }
    }

    /// Sets the record's timestamp (milliseconds since the Unix epoch).
    pub fn at(mut self, timestamp: i64) -> Record {
        self.timestamp = timestamp;
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: Option<impl Into<Bytes>>) -> Record {
        self.headers.push(RecordHeader { key: key.into(), value: value.map(Into::into) });
        self
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Compression(#[from] CompressionError),
    #[error("malformed record {index} of the batch: {detail}")]
    Malformed { index: usize, detail: &'static str },
}

/// Decodes every record of one validated batch. `decompressed_bytes_max` bounds the size of
/// the decompressed records section. The records are collected, which costs about 100 bytes per
/// record beyond the decompressed section: callers that only look at each record in turn should
/// use [`RecordIter`] instead.
pub fn decode_records(batch: &[u8], decompressed_bytes_max: usize) -> Result<Vec<Record>, DecodeError> {
    RecordIter::new(batch, decompressed_bytes_max)?.collect()
}

/// The records of one validated batch, decoded one at a time, so that memory stays within the
/// decompressed records section (at most `decompressed_bytes_max`) whatever the record count.
#[derive(Debug)]
pub struct RecordIter<'a> {
    header: BatchHeader,
    body: Body<'a>,
    pos: usize,
    index: usize,
    count: usize,
}

/// The records section: borrowed (keys and values are copied out), or shared (keys and values
/// are slices of it, no copy: a decompressed section, or a batch given as `Bytes`).
#[derive(Debug)]
enum Body<'a> {
    Borrowed(&'a [u8]),
    Shared(Bytes),
}

impl<'a> RecordIter<'a> {
    /// Validates the batch and decompresses its records section (bounded); no record is decoded yet.
    pub fn new(batch: &'a [u8], decompressed_bytes_max: usize) -> Result<RecordIter<'a>, DecodeError> {
        let header = BatchHeader::validate(batch)?;
        let raw = &batch[BATCH_HEADER_BYTES..header.size];
        let codec = header.compression()?;
        let body = if codec == Compression::None {
            Body::Borrowed(raw)
        } else {
            Body::Shared(Bytes::from(codec.decompress(raw, decompressed_bytes_max)?))
        };
        Self::start(header, body)
    }

    /// Like [`RecordIter::new`], for a batch held in `Bytes`: the records' keys, values and
    /// header values are slices of it (or of the decompressed section), never copies.
    pub fn from_bytes(batch: &Bytes, decompressed_bytes_max: usize) -> Result<RecordIter<'static>, DecodeError> {
        let header = BatchHeader::validate(batch)?;
        let codec = header.compression()?;
        let body = if codec == Compression::None {
            Body::Shared(batch.slice(BATCH_HEADER_BYTES..header.size))
        } else {
            Body::Shared(Bytes::from(
                codec.decompress(&batch[BATCH_HEADER_BYTES..header.size], decompressed_bytes_max)?,
            ))
        };
        RecordIter::start(header, body)
    }

    fn start<'b>(header: BatchHeader, body: Body<'b>) -> Result<RecordIter<'b>, DecodeError> {
        let count = usize::try_from(header.record_count).unwrap_or(0);
        let len = match &body {
            Body::Borrowed(b) => b.len(),
            Body::Shared(b) => b.len(),
        };
        // Each record takes at least 7 bytes, so a huge count in a small batch is refused
        // before anything is sized by it.
        if count > len / 7 + 1 {
            return Err(DecodeError::Malformed { index: 0, detail: "record count exceeds the batch size" });
        }
        Ok(RecordIter { header, body, pos: 0, index: 0, count })
    }

    /// The header of the batch being decoded.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    fn decode_next(&mut self) -> Result<Record, DecodeError> {
        let index = self.index;
        let (body, shared): (&[u8], Option<&Bytes>) = match &self.body {
            Body::Borrowed(b) => (b, None),
            Body::Shared(b) => (b, Some(b)),
        };
        let read_bytes = |buf: &[u8], pos: &mut usize| -> Option<Option<Bytes>> {
            let range = read_range(buf, pos)?;
            Some(range.map(|r| match shared {
                Some(all) => all.slice(r),
                None => Bytes::copy_from_slice(&buf[r]),
            }))
        };
        let header = &self.header;
        let bad = |detail| DecodeError::Malformed { index, detail };
        let mut pos = self.pos;
        let len = read_varint(body, &mut pos).ok_or(bad("truncated length"))?;
        let end = usize::try_from(len).ok().and_then(|l| pos.checked_add(l)).filter(|e| *e <= body.len());
        let end = end.ok_or(bad("length past the end of the batch"))?;
        let rec = &body[..end];
        pos += 1; // attributes (unused in v2)
        let ts_delta = read_varlong(rec, &mut pos).ok_or(bad("truncated timestamp delta"))?;
        let offset_delta = read_varint(rec, &mut pos).ok_or(bad("truncated offset delta"))?;
        let key = read_bytes(rec, &mut pos).ok_or(bad("truncated key"))?;
        let value = read_bytes(rec, &mut pos).ok_or(bad("truncated value"))?;
        let header_count = read_varint(rec, &mut pos).ok_or(bad("truncated header count"))?;
        let header_count = usize::try_from(header_count).map_err(|_| bad("negative header count"))?;
        if header_count > rec.len() {
            return Err(bad("header count exceeds the record size"));
        }
        let mut headers = Vec::with_capacity(header_count);
        for _ in 0..header_count {
            let key = read_bytes(rec, &mut pos).ok_or(bad("truncated header key"))?.ok_or(bad("null header key"))?;
            let key = String::from_utf8(key.to_vec()).map_err(|_| bad("header key is not UTF-8"))?;
            let value = read_bytes(rec, &mut pos).ok_or(bad("truncated header value"))?;
            headers.push(RecordHeader { key, value });
        }
        if pos != end {
            return Err(bad("record length does not match its fields"));
        }
        self.pos = end;
        Ok(Record {
            offset: header.base_offset + i64::from(offset_delta),
            timestamp: if header.is_log_append_time() {
                header.max_timestamp
            } else {
                header.base_timestamp.wrapping_add(ts_delta)
            },
            key,
            value,
            headers,
        })
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<Record, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        let record = self.decode_next();
        // After an error the batch is not trusted any further.
        self.index = if record.is_ok() { self.index + 1 } else { self.count };
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.count - self.index))
    }
}

/// The range of a length-prefixed field (`None` inside for a null), advancing `pos` past it.
fn read_range(buf: &[u8], pos: &mut usize) -> Option<Option<std::ops::Range<usize>>> {
    let len = read_varint(buf, pos)?;
    if len < 0 {
        return Some(None);
    }
    let end = pos.checked_add(len as usize).filter(|e| *e <= buf.len())?;
    let range = *pos..end;
    *pos = end;
    Some(Some(range))
}

fn write_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => write_varlong(out, -1),
        Some(b) => {
            write_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Bytes [`write_bytes`] writes.
fn bytes_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varlong_len(-1),
        Some(b) => varlong_len(b.len() as i64) + b.len(),
    }
}

/// Appends one record (length prefix, then its fields) to `out`. The length is worked out
/// first, so the record is written in place rather than staged and copied.
fn write_record(
    out: &mut Vec<u8>,
    timestamp_delta: i64,
    offset_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[RecordHeader],
) {
    let len = 1 // attributes
        + varlong_len(timestamp_delta)
        + varlong_len(offset_delta)
        + bytes_len(key)
        + bytes_len(value)
        + varlong_len(headers.len() as i64)
        + headers.iter().map(|h| bytes_len(Some(h.key.as_bytes())) + bytes_len(h.value.as_deref())).sum::<usize>();
    out.reserve(varlong_len(len as i64) + len);
    write_varlong(out, len as i64);
    let body = out.len();
    out.push(0); // attributes
    write_varlong(out, timestamp_delta);
    write_varlong(out, offset_delta);
    write_bytes(out, key);
    write_bytes(out, value);
    write_varlong(out, headers.len() as i64);
    for h in headers {
        write_bytes(out, Some(h.key.as_bytes()));
        write_bytes(out, h.value.as_deref());
    }
    debug_assert_eq!(out.len() - body, len, "record length worked out wrong");
}

/// What goes in a batch's header besides its records.
struct HeaderFields {
    base_offset: i64,
    last_offset_delta: i64,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: usize,
}

/// Compresses the records written after the header room in `out` (if asked), fills in the
/// header and the CRC, and returns the batch.
fn finish_batch(mut out: Vec<u8>, compression: Compression, h: HeaderFields) -> Result<Bytes, CompressionError> {
    if compression != Compression::None {
        let body = compression.compress(&out[BATCH_HEADER_BYTES..])?;
        out.truncate(BATCH_HEADER_BYTES);
        out.extend_from_slice(&body);
    }
    let size = out.len();
    let mut header = Vec::with_capacity(BATCH_HEADER_BYTES);
    header.extend_from_slice(&h.base_offset.to_be_bytes());
    header.extend_from_slice(&((size - 12) as i32).to_be_bytes());
    header.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    header.push(MAGIC_V2 as u8);
    header.extend_from_slice(&[0; 4]); // crc, filled below
    header.extend_from_slice(&compression.id().to_be_bytes());
    header.extend_from_slice(&(h.last_offset_delta as i32).to_be_bytes());
    header.extend_from_slice(&h.base_timestamp.to_be_bytes());
    header.extend_from_slice(&h.max_timestamp.to_be_bytes());
    header.extend_from_slice(&h.producer_id.to_be_bytes());
    header.extend_from_slice(&h.producer_epoch.to_be_bytes());
    header.extend_from_slice(&h.base_sequence.to_be_bytes());
    header.extend_from_slice(&(h.record_count as i32).to_be_bytes());
    out[..BATCH_HEADER_BYTES].copy_from_slice(&header);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Bytes::from(out))
}

/// Builds one v2 batch from records, as a producer does. Offsets are relative to base offset
/// 0 (the log assigns the real one); the base timestamp is the first record's.
#[derive(Debug)]
pub struct BatchBuilder {
    records: Vec<Record>,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    keep_offsets: bool,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        BatchBuilder {
            records: Vec::new(),
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            keep_offsets: false,
        }
    }

    /// Keeps each record's `offset` (ascending) instead of numbering records 0, 1, 2...: the
    /// batch's base offset is the first record's, as when compaction rewrites a batch.
    pub fn keep_offsets(mut self) -> BatchBuilder {
        self.keep_offsets = true;
        self
    }

    /// Marks the batch as written by an idempotent producer.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> BatchBuilder {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn push(&mut self, record: Record) {
        self.records.push(record);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Encodes the batch. An empty builder yields an error: Kafka has no empty batches.
    pub fn build(&self, compression: Compression) -> Result<Bytes, CompressionError> {
        assert!(!self.records.is_empty(), "a record batch needs at least one record");
        let base_timestamp = self.records[0].timestamp;
        let max_timestamp = self.records.iter().map(|r| r.timestamp).max().unwrap_or(base_timestamp);
        let base_offset = if self.keep_offsets { self.records[0].offset } else { 0 };
        let last_offset_delta = if self.keep_offsets {
            self.records[self.records.len() - 1].offset - base_offset
        } else {
            self.records.len() as i64 - 1
        };
        // Sized up front: the records' bytes plus a generous allowance for varints.
        let estimate: usize = self
            .records
            .iter()
            .map(|r| {
                24 + r.key.as_ref().map_or(0, |k| k.len())
                    + r.value.as_ref().map_or(0, |v| v.len())
                    + r.headers
                        .iter()
                        .map(|h| 10 + h.key.len() + h.value.as_ref().map_or(0, |v| v.len()))
                        .sum::<usize>()
            })
            .sum();
        // Records are written after room for the header, which is filled in last.
        let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + estimate);
        out.resize(BATCH_HEADER_BYTES, 0);
        for (i, r) in self.records.iter().enumerate() {
            let offset_delta = if self.keep_offsets { r.offset - base_offset } else { i as i64 };
            write_record(
                &mut out,
                r.timestamp.wrapping_sub(base_timestamp),
                offset_delta,
                r.key.as_deref(),
                r.value.as_deref(),
                &r.headers,
            );
        }
        finish_batch(
            out,
            compression,
            HeaderFields {
                base_offset,
                last_offset_delta,
                base_timestamp,
                max_timestamp,
                producer_id: self.producer_id,
                producer_epoch: self.producer_epoch,
                base_sequence: self.base_sequence,
                record_count: self.records.len(),
            },
        )
    }
}

/// Encodes one v2 batch record by record from borrowed keys and values, as [`BatchBuilder`]
/// does (offsets numbered from 0, the first record's timestamp as the base, no producer id),
/// without holding [`Record`]s: nothing is cloned, and each record is written once.
#[derive(Debug)]
pub struct BatchWriter {
    out: Vec<u8>,
    base_timestamp: i64,
    max_timestamp: i64,
    count: usize,
}

impl Default for BatchWriter {
    fn default() -> Self {
        BatchWriter::with_capacity(0)
    }
}

impl BatchWriter {
    /// A writer whose buffer has room for `bytes` of records before it grows.
    pub fn with_capacity(bytes: usize) -> BatchWriter {
        let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + bytes);
        // Records are written after room for the header, which is filled in last.
        out.resize(BATCH_HEADER_BYTES, 0);
        BatchWriter { out, base_timestamp: 0, max_timestamp: 0, count: 0 }
    }

    pub fn push(&mut self, timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[RecordHeader]) {
        if self.count == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        write_record(
            &mut self.out,
            timestamp.wrapping_sub(self.base_timestamp),
            self.count as i64,
            key,
            value,
            headers,
        );
        self.count += 1;
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encodes the batch. Panics without records: Kafka has no empty batches.
    pub fn finish(self, compression: Compression) -> Result<Bytes, CompressionError> {
        assert!(self.count > 0, "a record batch needs at least one record");
        finish_batch(
            self.out,
            compression,
            HeaderFields {
                base_offset: 0,
                last_offset_delta: self.count as i64 - 1,
                base_timestamp: self.base_timestamp,
                max_timestamp: self.max_timestamp,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                record_count: self.count,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            -1_000_000i64..1_000_000,
            proptest::collection::vec(
                ("[a-z]{0,8}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10))),
                0..3,
            ),
        )
            .prop_map(|(k, v, ts, hs)| {
                let mut r = Record::new(k, v).at(1_700_000_000_000 + ts);
                for (hk, hv) in hs {
                    r = r.with_header(hk, hv);
                }
                r
            })
    }

    proptest! {
        #[test]
        fn build_then_decode_is_identity(records in proptest::collection::vec(arb_record(), 1..20), codec in 0i16..5) {
            let codec = Compression::from_attributes(codec).unwrap();
            let mut b = BatchBuilder::new();
            for r in &records { b.push(r.clone()); }
            let batch = b.build(codec).unwrap();
            let decoded = decode_records(&batch, 1 << 20).unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(d.offset, i as i64);
                prop_assert_eq!(d.timestamp, r.timestamp);
                prop_assert_eq!(&d.key, &r.key);
                prop_assert_eq!(&d.value, &r.value);
                prop_assert_eq!(&d.headers, &r.headers);
            }
        }

        #[test]
        fn decoding_garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 61..400)) {
            // Make the header plausible so the decoder gets past validation sometimes.
            let len = (bytes.len() - 12) as i32;
            bytes[8..12].copy_from_slice(&len.to_be_bytes());
            bytes[16] = 2;
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
            let _ = decode_records(&bytes, 1 << 16);
        }
    }

    proptest! {
        /// BatchWriter is BatchBuilder without the records held: the bytes must be the same.
        #[test]
        fn batch_writer_matches_batch_builder(records in proptest::collection::vec(arb_record(), 1..20), codec in 0i16..5) {
            let codec = Compression::from_attributes(codec).unwrap();
            let mut builder = BatchBuilder::new();
            let mut writer = BatchWriter::with_capacity(64);
            for r in &records {
                builder.push(r.clone());
                writer.push(r.timestamp, r.key.as_deref(), r.value.as_deref(), &r.headers);
            }
            prop_assert_eq!(writer.len(), records.len());
            prop_assert_eq!(builder.build(codec).unwrap(), writer.finish(codec).unwrap());
        }
    }

    #[test]
    fn shared_and_borrowed_iteration_agree() {
        for codec in [Compression::None, Compression::Gzip] {
            let mut b = BatchBuilder::new();
            b.push(Record::new(Some(b"k1".to_vec()), Some(b"v1".to_vec())).with_header("h", Some(b"x".to_vec())));
            b.push(Record::new(None::<Vec<u8>>, None::<Vec<u8>>));
            let batch = b.build(codec).unwrap();
            let borrowed: Vec<Record> = RecordIter::new(&batch, 1 << 20).unwrap().collect::<Result<_, _>>().unwrap();
            let shared: Vec<Record> =
                RecordIter::from_bytes(&batch, 1 << 20).unwrap().collect::<Result<_, _>>().unwrap();
            assert_eq!(borrowed, shared, "{codec:?}");
            assert_eq!(shared[0].key.as_deref(), Some(&b"k1"[..]));
        }
    }
}
