//! The 61-byte header of a v2 record batch: reading its fields, checking it, and the few
//! in-place edits a broker makes (base offset, leader epoch, log-append time).
//!
//! Layout (big-endian), from the Kafka protocol guide:
//! `baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//! attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//! producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32 | records`.
//! The CRC-32C covers everything from `attributes` to the end of the batch.

use crate::compression::Compression;

/// Bytes in a v2 batch header, up to and including `recordCount`.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batchLength`'s payload: `baseOffset` and `batchLength` themselves.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only record format runnel accepts.
pub const MAGIC_V2: i8 = 2;

const LENGTH_AT: usize = 8;
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

const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// Why bytes are not a valid v2 batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    #[error("record batch truncated: {available} bytes where {needed} are needed")]
    Truncated { needed: usize, available: usize },
    #[error("record batch length {length} is invalid (a batch is at least {BATCH_HEADER_BYTES} bytes)")]
    BadLength { length: i32 },
    #[error("record batch has magic {magic}; only magic 2 (Kafka 0.11+) is supported")]
    UnsupportedMagic { magic: i8 },
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch header is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// The fields of a batch header that the log and broker use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes of the whole batch, header included (`batchLength` + 12).
    pub size: usize,
    pub partition_leader_epoch: i32,
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

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Reads the header at the start of `buf` without checking the CRC. `buf` may hold more
    /// than one batch; only the first header is read.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < LOG_OVERHEAD_BYTES {
            return Err(BatchError::Truncated { needed: LOG_OVERHEAD_BYTES, available: buf.len() });
        }
        let length = i32_at(buf, LENGTH_AT);
        let size = usize::try_from(length)
            .ok()
            .map(|l| l + LOG_OVERHEAD_BYTES)
            .filter(|s| *s >= BATCH_HEADER_BYTES)
            .ok_or(BatchError::BadLength { length })?;
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated { needed: BATCH_HEADER_BYTES, available: buf.len() });
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        let header = BatchHeader {
            base_offset: i64_at(buf, 0),
            size,
            partition_leader_epoch: i32_at(buf, LEADER_EPOCH_AT),
            crc: u32::from_be_bytes(buf[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes")),
            attributes: i16_at(buf, ATTRIBUTES_AT),
            last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: i64_at(buf, BASE_TIMESTAMP_AT),
            max_timestamp: i64_at(buf, MAX_TIMESTAMP_AT),
            producer_id: i64_at(buf, PRODUCER_ID_AT),
            producer_epoch: i16_at(buf, PRODUCER_EPOCH_AT),
            base_sequence: i32_at(buf, BASE_SEQUENCE_AT),
            record_count: i32_at(buf, RECORD_COUNT_AT),
        };
        if header.last_offset_delta < 0 {
            return Err(BatchError::Inconsistent("negative lastOffsetDelta"));
        }
        if header.record_count < 0 {
            return Err(BatchError::Inconsistent("negative recordCount"));
        }
        Ok(header)
    }

    /// Reads the first batch of `buf` and checks that it is complete and its CRC-32C matches.
    pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = Self::parse(buf)?;
        if buf.len() < header.size {
            return Err(BatchError::Truncated { needed: header.size, available: buf.len() });
        }
        let computed = crc32c::crc32c(&buf[ATTRIBUTES_AT..header.size]);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch { stored: header.crc, computed });
        }
        Ok(header)
    }

    /// The offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn compression(&self) -> Result<Compression, crate::compression::CompressionError> {
        Compression::from_attributes(self.attributes)
    }

    /// True when the batch's timestamps were set by the broker (`LogAppendTime`).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// True when the batch carries a producer id (idempotent or transactional producer).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// Rewrites the base offset of the batch at the start of `buf` (not covered by the CRC).
pub fn set_base_offset(buf: &mut [u8], base_offset: i64) {
    buf[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites the partition leader epoch (not covered by the CRC).
pub fn set_partition_leader_epoch(buf: &mut [u8], epoch: i32) {
    buf[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as `LogAppendTime` with `timestamp` as its max timestamp, as Kafka does for
/// topics with `message.timestamp.type=LogAppendTime`, and recomputes the CRC.
pub fn set_log_append_time(buf: &mut [u8], size: usize, timestamp: i64) {
    let attributes = i16_at(buf, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
    buf[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    buf[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_AT..size]);
    buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Iterates over the validated batches of a buffer holding whole batches back to back.
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Batches<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Batches { buf, pos: 0 }
    }

    /// Bytes consumed so far (the start of the next batch).
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Batches<'a> {
    /// A batch's header, and its bytes.
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        match BatchHeader::validate(rest) {
            Ok(header) => {
                self.pos += header.size;
                Some(Ok((header, &rest[..header.size])))
            }
            Err(e) => {
                self.pos = self.buf.len();
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BatchBuilder, Record};

    fn sample() -> Vec<u8> {
        let mut b = BatchBuilder::new();
        b.push(Record::new(Some(b"k".to_vec()), Some(b"v".to_vec())).at(1_005));
        b.push(Record::new(None::<Vec<u8>>, Some(b"w".to_vec())).at(1_002));
        b.build(Compression::None).unwrap().to_vec()
    }

    #[test]
    fn validates_a_built_batch() {
        let buf = sample();
        let h = BatchHeader::validate(&buf).unwrap();
        assert_eq!(h.size, buf.len());
        assert_eq!(h.record_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.base_timestamp, 1_005);
        assert_eq!(h.max_timestamp, 1_005);
        assert!(!h.has_producer_id());
    }

    #[test]
    fn detects_every_single_bit_flip_in_the_crc_range() {
        let buf = sample();
        for i in ATTRIBUTES_AT..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            assert!(BatchHeader::validate(&bad).is_err(), "flip at {i} not detected");
        }
    }

    #[test]
    fn base_offset_edit_keeps_crc_valid() {
        let mut buf = sample();
        set_base_offset(&mut buf, 42);
        set_partition_leader_epoch(&mut buf, 7);
        let h = BatchHeader::validate(&buf).unwrap();
        assert_eq!((h.base_offset, h.last_offset(), h.partition_leader_epoch), (42, 43, 7));
        let size = h.size;
        set_log_append_time(&mut buf, size, 9_999);
        let h = BatchHeader::validate(&buf).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 9_999);
    }

    #[test]
    fn rejects_short_and_bad_input() {
        assert!(matches!(BatchHeader::parse(&[0; 5]), Err(BatchError::Truncated { .. })));
        let mut buf = sample();
        buf[MAGIC_AT] = 1;
        assert!(matches!(BatchHeader::parse(&buf), Err(BatchError::UnsupportedMagic { magic: 1 })));
        let mut buf = sample();
        buf[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(BatchHeader::parse(&buf), Err(BatchError::BadLength { .. })));
        let buf = sample();
        assert!(matches!(BatchHeader::validate(&buf[..buf.len() - 1]), Err(BatchError::Truncated { .. })));
    }

    #[test]
    fn iterates_back_to_back_batches() {
        let mut buf = sample();
        buf.extend(sample());
        let all: Vec<_> = Batches::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 2);
    }
}
