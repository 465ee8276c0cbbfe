//! Kafka v2 record batches ("magic 2"), the unit runnel stores and serves verbatim.
//!
//! The log and the broker only need a batch's header fields (offsets, timestamps, producer
//! identity) and its CRC-32C; [`batch`] reads and checks those without decoding a record.
//! Compaction, the CLI and the SQL tier need the records themselves: [`record`] decodes and
//! encodes them, with [`compression`] for the four codecs Kafka uses.

pub mod batch;
pub mod compression;
pub mod partitioner;
pub mod record;
mod varint;

pub use batch::{BATCH_HEADER_BYTES, BatchError, BatchHeader, Batches};
pub use compression::Compression;
pub use partitioner::{murmur2, partition_for_key};
pub use record::{BatchBuilder, BatchWriter, DecodeError, Record, RecordHeader, RecordIter, decode_records};
