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
        let mut rec = Vec::new();
        for (i, r) in self.records.iter().enumerate() {
            rec.clear();
            rec.push(0); // attributes
            write_varlong(&mut rec, r.timestamp.wrapping_sub(base_timestamp));
            write_varlong(&mut rec, if self.keep_offsets { r.offset - base_offset } else { i as i64 });
            write_bytes(&mut rec, r.key.as_deref());
            write_bytes(&mut rec, r.value.as_deref());
            write_varlong(&mut rec, r.headers.len() as i64);
            for h in &r.headers {
                write_bytes(&mut rec, Some(h.key.as_bytes()));
                write_bytes(&mut rec, h.value.as_deref());
            }
            out.reserve(rec.len() + varlong_len(rec.len() as i64));
            write_varlong(&mut out, rec.len() as i64);
            out.extend_from_slice(&rec);
        }
        if compression != Compression::None {
            let body = compression.compress(&out[BATCH_HEADER_BYTES..])?;
            out.truncate(BATCH_HEADER_BYTES);
            out.extend_from_slice(&body);
        }
        let size = out.len();
        let mut header = Vec::with_capacity(BATCH_HEADER_BYTES);
        header.extend_from_slice(&base_offset.to_be_bytes());
        header.extend_from_slice(&((size - 12) as i32).to_be_bytes());
        header.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        header.push(MAGIC_V2 as u8);
        header.extend_from_slice(&[0; 4]); // crc, filled below
        header.extend_from_slice(&compression.id().to_be_bytes());
        header.extend_from_slice(&(last_offset_delta as i32).to_be_bytes());
        header.extend_from_slice(&base_timestamp.to_be_bytes());
        header.extend_from_slice(&max_timestamp.to_be_bytes());
        header.extend_from_slice(&self.producer_id.to_be_bytes());
        header.extend_from_slice(&self.producer_epoch.to_be_bytes());
        header.extend_from_slice(&self.base_sequence.to_be_bytes());
        header.extend_from_slice(&(self.records.len() as i32).to_be_bytes());
        out[..BATCH_HEADER_BYTES].copy_from_slice(&header);
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(Bytes::from(out))
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
