//! The durable, partitioned, append-only log under every runnel stream.
//!
//! A [`Log`] holds topics; a topic holds [`Partition`]s; a partition holds segments of Kafka v2
//! record batches stored verbatim. There is no networking here: the broker and the SQL and
//! function tiers call these blocking methods (from `spawn_blocking` in async code).
//!
//! Durability: `append` writes (the OS may still hold the data); `sync_to` returns once the data
//! is fsynced, with group commit so concurrent appenders share one fsync. `append_buffered`
//! is for callers that acknowledge only after `sync_to`: it keeps the batches in memory, and
//! the sync writes everything buffered since the last one in one write before its fsync. A
//! failed fsync takes the partition offline until a restart recovers it: nothing is
//! acknowledged after a failed fsync. After an unclean stop, every batch past the last recovery point is validated and a
//! torn tail is truncated; corruption below the recovery point takes the partition offline with
//! the file and byte position, and is never truncated silently.
//!
//! On disk: `<data_dir>/topics/<topic>/topic.json` (id, partition count, config) and
//! `<data_dir>/topics/<topic>/<partition>/{<base offset:020>.log, recovery-point, log-start-offset}`
//! and, beside each rolled segment, `<base offset:020>.{index,timeindex,producers}`;
//! a `clean-shutdown` marker in `<data_dir>` while the store is closed cleanly.

pub mod compaction;
pub mod config;
pub mod error;
mod index;
mod partition;
mod producer;
pub mod sim;
pub mod stats;
pub mod storage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

pub use config::{CleanupPolicy, ConfigError, LogConfig, TimestampType, TopicConfig};
pub use error::{AppendError, LogError, ReadError};
pub use partition::{AppendInfo, OpenStats, Partition, ReadResult, WRITE_BUFFER_BYTES_MAX};

use partition::WriteBudget;
pub use sim::SimStorage;
pub use storage::{FsStorage, Storage, StorageFile};

use storage::{FileCache, read_all, write_atomically};

/// Most partitions a topic may have.
pub const PARTITIONS_MAX: u32 = 10_000;
/// Longest topic name, as in Kafka.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

const TOPICS_DIR: &str = "topics";
const DELETED_DIR: &str = "deleted";
const TOPIC_FILE: &str = "topic.json";
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// A topic's identity and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// A random UUID (v4) given at creation.
    pub id: [u8; 16],
    pub partitions: u32,
    pub config: TopicConfig,
    /// Internal topics (`__consumer_offsets`, ...) start with two underscores.
    pub internal: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TopicFile {
    id: String,
    partitions: u32,
    config: TopicConfig,
}

struct Topic {
    id: [u8; 16],
    dir: PathBuf,
    config: Arc<RwLock<TopicConfig>>,
    partitions: RwLock<Vec<Arc<Partition>>>,
}

/// The whole store.
pub struct Log {
    config: LogConfig,
    files: Arc<FileCache>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic creation, deletion and alteration.
    admin: Mutex<()>,
    /// Whether the last shutdown was clean (informational).
    recovered_cleanly: bool,
    /// Bytes in all partitions' write buffers, against `LogConfig::write_buffers_bytes_max`.
    write_budget: Arc<WriteBudget>,
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 16]> {
    let mut id = [0u8; 16];
    if s.len() != 32 {
        return None;
    }
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

fn new_topic_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    for b in id.iter_mut() {
        *b = fastrand::u8(..);
    }
    id[6] = (id[6] & 0x0f) | 0x40; // version 4
    id[8] = (id[8] & 0x3f) | 0x80; // variant 1
    id
}

/// Checks a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let invalid = |reason| Err(LogError::InvalidTopicName { name: name.to_string(), reason });
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid("it is longer than 249 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-') {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

impl Log {
    /// Opens the store on the real filesystem.
    pub fn open(config: LogConfig) -> Result<Arc<Log>, LogError> {
        Self::open_with(config, Arc::new(FsStorage))
    }

    /// Opens the store on `storage`, recovering partitions after an unclean shutdown.
    pub fn open_with(config: LogConfig, storage: Arc<dyn Storage>) -> Result<Arc<Log>, LogError> {
        let data_dir = config.data_dir.clone();
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |e| LogError::Io { path, source: e }
        };
        let topics_dir = data_dir.join(TOPICS_DIR);
        storage.create_dir_all(&topics_dir).map_err(io(&topics_dir))?;
        let deleted = data_dir.join(DELETED_DIR);
        if storage.exists(&deleted) {
            storage.remove_dir_all(&deleted).map_err(io(&deleted))?;
        }
        let marker = data_dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = storage.exists(&marker);
        if clean {
            storage.remove_file(&marker).map_err(io(&marker))?;
            storage.sync_dir(&data_dir).map_err(io(&data_dir))?;
        } else {
            tracing::info!(dir = %data_dir.display(), "no clean-shutdown marker: recovering every partition past its recovery point");
        }
        let files = Arc::new(FileCache::new(storage.clone(), config.file_handles_max));
        let write_budget = Arc::new(WriteBudget::new(config.write_buffers_bytes_max));
        let mut topics = BTreeMap::new();
        for name in storage.list(&topics_dir).map_err(io(&topics_dir))? {
            let dir = topics_dir.join(&name);
            let meta_path = dir.join(TOPIC_FILE);
            if !storage.exists(&meta_path) {
                continue;
            }
            let bytes = read_all(storage.as_ref(), &meta_path).map_err(io(&meta_path))?;
            let meta: TopicFile = serde_json::from_slice(&bytes).map_err(|e| LogError::Corrupt {
                path: meta_path.clone(),
                position: 0,
                detail: e.to_string(),
            })?;
            let id = unhex(&meta.id).ok_or_else(|| LogError::Corrupt {
                path: meta_path.clone(),
                position: 0,
                detail: "bad topic id".to_string(),
            })?;
            let topic_config = Arc::new(RwLock::new(meta.config));
            let mut partitions = Vec::new();
            for i in 0..meta.partitions {
                partitions.push(Arc::new(Partition::open(
                    &name,
                    i,
                    dir.join(i.to_string()),
                    topic_config.clone(),
                    files.clone(),
                    config.decompressed_bytes_max,
                    config.read_bytes_max,
                    write_budget.clone(),
                    clean,
                )?));
            }
            topics.insert(name, Arc::new(Topic { id, dir, config: topic_config, partitions: RwLock::new(partitions) }));
        }
        Ok(Arc::new(Log {
            config,
            write_budget,
            files,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            recovered_cleanly: clean,
        }))
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Whether the store was last closed with [`Log::shutdown`].
    pub fn recovered_cleanly(&self) -> bool {
        self.recovered_cleanly
    }

    fn storage(&self) -> &Arc<dyn Storage> {
        self.files.storage()
    }

    fn info(name: &str, t: &Topic) -> TopicInfo {
        TopicInfo {
            name: name.to_string(),
            id: t.id,
            partitions: t.partitions.read().expect("partitions lock").len() as u32,
            config: t.config.read().expect("config lock").clone(),
            internal: name.starts_with("__"),
        }
    }

    fn write_topic_file(&self, t: &Topic) -> Result<(), LogError> {
        let file = TopicFile {
            id: hex(&t.id),
            partitions: t.partitions.read().expect("partitions lock").len() as u32,
            config: t.config.read().expect("config lock").clone(),
        };
        let path = t.dir.join(TOPIC_FILE);
        let bytes = serde_json::to_vec_pretty(&file).expect("topic metadata serializes");
        write_atomically(self.storage().as_ref(), &path, &bytes).map_err(|e| LogError::Io { path, source: e })
    }

    pub fn create_topic(&self, name: &str, partitions: u32, config: TopicConfig) -> Result<TopicInfo, LogError> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > PARTITIONS_MAX {
            return Err(LogError::InvalidPartitions(i64::from(partitions)));
        }
        let _admin = self.admin.lock().expect("admin lock");
        if self.topics.read().expect("topics lock").contains_key(name) {
            return Err(LogError::TopicExists(name.to_string()));
        }
        let dir = self.config.data_dir.join(TOPICS_DIR).join(name);
        self.storage().create_dir_all(&dir).map_err(|e| LogError::Io { path: dir.clone(), source: e })?;
        let topic_config = Arc::new(RwLock::new(config));
        let mut parts = Vec::new();
        for i in 0..partitions {
            parts.push(Arc::new(Partition::open(
                name,
                i,
                dir.join(i.to_string()),
                topic_config.clone(),
                self.files.clone(),
                self.config.decompressed_bytes_max,
                self.config.read_bytes_max,
                self.write_budget.clone(),
                true,
            )?));
        }
        let topic = Arc::new(Topic { id: new_topic_id(), dir, config: topic_config, partitions: RwLock::new(parts) });
        self.write_topic_file(&topic)?;
        let topics_dir = self.config.data_dir.join(TOPICS_DIR);
        self.storage().sync_dir(&topics_dir).map_err(|e| LogError::Io { path: topics_dir, source: e })?;
        let info = Self::info(name, &topic);
        self.topics.write().expect("topics lock").insert(name.to_string(), topic);
        Ok(info)
    }

    pub fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self
            .topics
            .write()
            .expect("topics lock")
            .remove(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        let deleted = self.config.data_dir.join(DELETED_DIR);
        // The topic id alone: a 249-byte topic name plus a suffix would exceed the file
        // system's 255-byte name limit.
        let grave = deleted.join(hex(&topic.id));
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |e| LogError::Io { path, source: e }
        };
        self.files.forget_dir(&topic.dir);
        let moved = self
            .storage()
            .create_dir_all(&deleted)
            .map_err(io(&deleted))
            .and_then(|()| self.storage().rename(&topic.dir, &grave).map_err(io(&topic.dir)));
        if let Err(e) = moved {
            // Nothing was removed: the topic stays, in memory as on disk.
            self.topics.write().expect("topics lock").insert(name.to_string(), topic);
            return Err(e);
        }
        let topics_dir = self.config.data_dir.join(TOPICS_DIR);
        self.storage().sync_dir(&topics_dir).map_err(io(&topics_dir))?;
        self.storage().remove_dir_all(&grave).map_err(io(&grave))?;
        Ok(())
    }

    pub fn create_partitions(&self, name: &str, total: u32) -> Result<(), LogError> {
        if total == 0 || total > PARTITIONS_MAX {
            return Err(LogError::InvalidPartitions(i64::from(total)));
        }
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self
            .topics
            .read()
            .expect("topics lock")
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        let current = topic.partitions.read().expect("partitions lock").len() as u32;
        if total < current {
            return Err(LogError::PartitionsCannotShrink { topic: name.to_string(), current, requested: total });
        }
        let mut added = Vec::new();
        for i in current..total {
            added.push(Arc::new(Partition::open(
                name,
                i,
                topic.dir.join(i.to_string()),
                topic.config.clone(),
                self.files.clone(),
                self.config.decompressed_bytes_max,
                self.config.read_bytes_max,
                self.write_budget.clone(),
                true,
            )?));
        }
        topic.partitions.write().expect("partitions lock").extend(added);
        self.write_topic_file(&topic)
    }

    pub fn alter_topic_config(&self, name: &str, config: TopicConfig) -> Result<(), LogError> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self
            .topics
            .read()
            .expect("topics lock")
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        *topic.config.write().expect("config lock") = config;
        self.write_topic_file(&topic)
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<TopicInfo> {
        self.topics.read().expect("topics lock").iter().map(|(n, t)| Self::info(n, t)).collect()
    }

    pub fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.topics.read().expect("topics lock").get(name).map(|t| Self::info(name, t))
    }

    pub fn partition(&self, topic: &str, index: u32) -> Option<Arc<Partition>> {
        let topics = self.topics.read().expect("topics lock");
        let t = topics.get(topic)?;
        t.partitions.read().expect("partitions lock").get(index as usize).cloned()
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let topics = self.topics.read().expect("topics lock");
        topics.values().flat_map(|t| t.partitions.read().expect("partitions lock").clone()).collect()
    }

    /// Retention, compaction, time-based rolls, `flush.ms` and recovery-point checkpoints for
    /// every partition. Call about once a second from a background thread.
    pub fn run_maintenance(&self, now_ms: i64) {
        for p in self.all_partitions() {
            if let Err(e) = p.maintain(now_ms) {
                tracing::warn!(topic = p.topic(), partition = p.index(), error = %e, "log maintenance failed");
            }
        }
    }

    /// fsyncs every partition and writes the clean-shutdown marker.
    pub fn shutdown(&self) -> Result<(), LogError> {
        let mut all_ok = true;
        for p in self.all_partitions() {
            if let Err(e) = p.close() {
                tracing::error!(topic = p.topic(), partition = p.index(), error = %e, "could not close partition cleanly");
                all_ok = false;
            }
        }
        if all_ok {
            let marker = self.config.data_dir.join(CLEAN_SHUTDOWN_FILE);
            write_atomically(self.storage().as_ref(), &marker, b"")
                .map_err(|e| LogError::Io { path: marker, source: e })?;
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, for callers that need "now".
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
