//! Errors of the log, one enum per kind of operation, with messages a user can act on.

use std::io;
use std::path::PathBuf;

use runnel_records::BatchError;

/// Opening the store, or a topic-level operation (create, delete, alter).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid partition count {0}: it must be between 1 and {max}", max = crate::PARTITIONS_MAX)]
    InvalidPartitions(i64),
    #[error("topic {topic:?} has {current} partitions; it can only grow, not become {requested}")]
    PartitionsCannotShrink { topic: String, current: u32, requested: u32 },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(
        "corrupt log at {path} byte {position}: {detail}; the partition is offline (data below the recovery point is never truncated silently)"
    )]
    Corrupt { path: PathBuf, position: u64, detail: String },
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Appending record batches to a partition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u32 },
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32 },
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    ProducerFenced { producer_id: i64, epoch: i16, current: i16 },
    #[error("partition is offline: {0}")]
    Offline(String),
    #[error("no space left on device writing {path}")]
    StorageFull { path: PathBuf },
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Reading from a partition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("offset {offset} is out of range: the partition holds offsets {log_start_offset} to {high_watermark}")]
    OffsetOutOfRange { offset: i64, log_start_offset: i64, high_watermark: i64 },
    #[error("partition is offline: {0}")]
    Offline(String),
    #[error("corrupt log at {path} byte {position}: {detail}")]
    Corrupt { path: PathBuf, position: u64, detail: String },
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

pub(crate) fn is_enospc(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == io::ErrorKind::StorageFull
}
