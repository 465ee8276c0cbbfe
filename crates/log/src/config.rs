//! Topic configuration with Kafka's names, defaults and validation, and the store-wide
//! [`LogConfig`].

use std::path::PathBuf;

/// What happens to old segments: deleted by time/size, compacted by key, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
    fn name(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// Whose clock stamps a record: the producer's (`CreateTime`) or the broker's (`LogAppendTime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Kafka's "no limit" for the `*.ms` and `*.messages` settings.
pub const UNLIMITED: i64 = i64::MAX;
/// Smallest segment a topic may use.
pub const SEGMENT_BYTES_MIN: u64 = 14;
/// Largest segment: offsets inside a segment's index are 32-bit.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

/// Per-topic settings, named and defaulted as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
    /// Segments whose newest record is older than this are deleted; -1 keeps them forever.
    pub retention_ms: i64,
    /// A partition larger than this drops its oldest segments; -1 means no limit.
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    /// An active segment older than this is rolled even if not full.
    pub segment_ms: i64,
    /// Bytes between two entries of the sparse offset index.
    pub index_interval_bytes: u32,
    /// Largest record batch accepted, in bytes.
    pub max_message_bytes: u32,
    pub message_timestamp_type: TimestampType,
    /// fsync after this many records appended since the last fsync.
    pub flush_messages: i64,
    /// fsync when the oldest unsynced record is older than this.
    pub flush_ms: i64,
    /// How long tombstones survive compaction.
    pub delete_retention_ms: i64,
    /// Records younger than this are never compacted.
    pub min_compaction_lag_ms: i64,
    /// Compression the topic asks of its producers (stored, batches are kept as they come).
    pub compression_type: String,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            cleanup_policy: CleanupPolicy::Delete,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            flush_messages: UNLIMITED,
            flush_ms: UNLIMITED,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            compression_type: "producer".to_string(),
        }
    }
}

/// A setting name or value that Kafka would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("unknown topic config {0:?}")]
    Unknown(String),
    #[error("invalid value {value:?} for topic config {name}: {reason}")]
    Invalid { name: String, value: String, reason: &'static str },
}

impl TopicConfig {
    /// Every topic config name runnel knows, in the order DescribeConfigs lists them.
    pub const NAMES: &'static [&'static str] = &[
        "cleanup.policy",
        "compression.type",
        "delete.retention.ms",
        "flush.messages",
        "flush.ms",
        "index.interval.bytes",
        "max.message.bytes",
        "message.timestamp.type",
        "min.compaction.lag.ms",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.ms",
    ];

    /// The current value of `name` as Kafka prints it.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "cleanup.policy" => self.cleanup_policy.name().to_string(),
            "compression.type" => self.compression_type.clone(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => match self.message_timestamp_type {
                TimestampType::CreateTime => "CreateTime".to_string(),
                TimestampType::LogAppendTime => "LogAppendTime".to_string(),
            },
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            _ => return None,
        })
    }

    /// Every setting with its value and whether it differs from `defaults`.
    pub fn entries(&self, defaults: &TopicConfig) -> Vec<(&'static str, String, bool)> {
        Self::NAMES
            .iter()
            .map(|n| {
                let v = self.get(n).expect("known name");
                let is_default = defaults.get(n).as_deref() == Some(v.as_str());
                (*n, v, is_default)
            })
            .collect()
    }

    /// Sets `name` to `value`, validated as Kafka validates it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let invalid = |reason| ConfigError::Invalid { name: name.to_string(), value: value.to_string(), reason };
        let long = |min: i64| -> Result<i64, ConfigError> {
            let v: i64 = value.trim().parse().map_err(|_| invalid("not a number"))?;
            if v < min { Err(invalid("below the minimum")) } else { Ok(v) }
        };
        match name {
            "cleanup.policy" => {
                let mut parts: Vec<String> = value.split(',').map(|p| p.trim().to_ascii_lowercase()).collect();
                parts.sort();
                parts.dedup();
                self.cleanup_policy = match parts.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                    ["delete"] => CleanupPolicy::Delete,
                    ["compact"] => CleanupPolicy::Compact,
                    ["compact", "delete"] => CleanupPolicy::CompactDelete,
                    _ => return Err(invalid("expected delete, compact or compact,delete")),
                };
            }
            "compression.type" => match value {
                "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => {
                    self.compression_type = value.to_string()
                }
                _ => return Err(invalid("expected producer, uncompressed, gzip, snappy, lz4 or zstd")),
            },
            "delete.retention.ms" => self.delete_retention_ms = long(0)?,
            "flush.messages" => self.flush_messages = long(1)?,
            "flush.ms" => self.flush_ms = long(0)?,
            "index.interval.bytes" => {
                self.index_interval_bytes = u32::try_from(long(0)?).map_err(|_| invalid("too large"))?
            }
            "max.message.bytes" => {
                self.max_message_bytes = u32::try_from(long(0)?).map_err(|_| invalid("too large"))?
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(invalid("expected CreateTime or LogAppendTime")),
                }
            }
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = long(0)?,
            "retention.bytes" => self.retention_bytes = long(-1)?,
            "retention.ms" => self.retention_ms = long(-1)?,
            "segment.bytes" => {
                let v = long(SEGMENT_BYTES_MIN as i64)? as u64;
                if v > SEGMENT_BYTES_MAX {
                    return Err(invalid("above the maximum of 2147483647"));
                }
                self.segment_bytes = v;
            }
            "segment.ms" => self.segment_ms = long(1)?,
            _ => return Err(ConfigError::Unknown(name.to_string())),
        }
        Ok(())
    }
}

/// Store-wide settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Where topics live (`./runnel-data` by default in `runnel serve`).
    pub data_dir: PathBuf,
    /// The configuration a new topic starts from.
    pub topic_defaults: TopicConfig,
    /// Most file handles the store keeps open at once (an LRU), so that thousands of
    /// partitions work under the default `ulimit -n` of 1024.
    pub file_handles_max: usize,
    /// Bytes read from disk for one `read` call at most, whatever the caller asks.
    pub read_bytes_max: usize,
    /// Largest decompressed batch that compaction will decode.
    pub decompressed_bytes_max: usize,
    /// Most bytes all partitions together hold in their write buffers (batches appended with
    /// `append_buffered`, waiting for the next sync to write them); past it, such appends
    /// write at once, as `append` does.
    pub write_buffers_bytes_max: usize,
}

/// Default for [`LogConfig::file_handles_max`].
pub const FILE_HANDLES_MAX_DEFAULT: usize = 512;
/// Default for [`LogConfig::read_bytes_max`]: Kafka's `fetch.max.bytes` default.
pub const READ_BYTES_MAX_DEFAULT: usize = 52_428_800;
/// Default for [`LogConfig::decompressed_bytes_max`].
pub const DECOMPRESSED_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// Default for [`LogConfig::write_buffers_bytes_max`].
pub const WRITE_BUFFERS_BYTES_MAX_DEFAULT: usize = 256 << 20;

impl LogConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            data_dir: data_dir.into(),
            topic_defaults: TopicConfig::default(),
            file_handles_max: FILE_HANDLES_MAX_DEFAULT,
            read_bytes_max: READ_BYTES_MAX_DEFAULT,
            decompressed_bytes_max: DECOMPRESSED_BYTES_MAX_DEFAULT,
            write_buffers_bytes_max: WRITE_BUFFERS_BYTES_MAX_DEFAULT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_through_get_and_set() {
        let mut c = TopicConfig::default();
        for name in TopicConfig::NAMES {
            let v = c.get(name).unwrap();
            c.set(name, &v).unwrap();
        }
        assert_eq!(c, TopicConfig::default());
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = TopicConfig::default();
        assert!(matches!(c.set("retention.ms", "soon"), Err(ConfigError::Invalid { .. })));
        assert!(matches!(c.set("cleanup.policy", "shred"), Err(ConfigError::Invalid { .. })));
        assert!(matches!(c.set("no.such", "1"), Err(ConfigError::Unknown(_))));
        c.set("cleanup.policy", "delete, compact").unwrap();
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
    }
}
