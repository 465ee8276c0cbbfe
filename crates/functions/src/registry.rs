//! The service's durable state: component binaries in a content-addressed directory
//! (`<data_dir>/functions/components/<sha256>.wasm`, written atomically), function specs in
//! the compacted topic [`FUNCTIONS_TOPIC`] and trigger and dead-letter-replay positions in
//! the compacted topic [`POSITIONS_TOPIC`], both replayed at start.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use runnel_sql::EventLog;
use runnel_sql::eventlog::{LogFailure, LogRecord, OutRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine_host::now_ms;
use crate::limits::TRIGGER_READ_BYTES_MAX;

/// Function specs: key = function name, value = `FunctionSpec` as JSON, tombstone = deleted.
pub const FUNCTIONS_TOPIC: &str = "__runnel_functions";
/// Committed positions: key `NAME/PARTITION` for a topic or table trigger (`topic`: the
/// table's topic), `NAME/dead-letters/PARTITION` for the dead-letter replay, value
/// `{"topic": ..., "offset": ...}`; key `NAME/timer` for a timer trigger, value
/// `{"topic": "cron:EXPR", "offset": LAST_FIRE_MS}` (the last completed fire time).
pub const POSITIONS_TOPIC: &str = "__runnel_function_offsets";

/// Why the component directory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("component store {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("component {sha256} is corrupt: its bytes hash to {actual}")]
    Corrupt { sha256: String, actual: String },
}

/// Component binaries by SHA-256.
pub(crate) struct ComponentStore {
    dir: PathBuf,
}

impl ComponentStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    pub fn sha256(bytes: &[u8]) -> String {
        Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.wasm"))
    }

    /// Stores `wasm` (write to a temporary file, fsync, rename, fsync the directory) and
    /// returns its hash. Storing the same bytes again is a no-op.
    pub fn put(&self, wasm: &[u8]) -> Result<String, StoreError> {
        let sha256 = Self::sha256(wasm);
        let path = self.path(&sha256);
        if path.exists() {
            return Ok(sha256);
        }
        let io = |source| StoreError::Io { path: path.clone(), source };
        let tmp = self.dir.join(format!("{sha256}.wasm.tmp"));
        {
            let mut file = std::fs::File::create(&tmp).map_err(io)?;
            file.write_all(wasm).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(sha256)
    }

    /// The bytes stored under `sha256`, checked against it.
    pub fn get(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(sha256);
        let bytes = std::fs::read(&path).map_err(|source| StoreError::Io { path, source })?;
        let actual = Self::sha256(&bytes);
        if actual != sha256 {
            return Err(StoreError::Corrupt { sha256: sha256.to_string(), actual });
        }
        Ok(bytes)
    }

    pub fn remove(&self, sha256: &str) {
        let path = self.path(sha256);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove an unused component");
        }
    }
}

/// A committed position: the next offset to process in `topic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    pub topic: String,
    pub offset: i64,
}

pub(crate) fn trigger_key(name: &str, partition: u32) -> String {
    format!("{name}/{partition}")
}

pub(crate) fn timer_key(name: &str) -> String {
    format!("{name}/timer")
}

pub(crate) fn replay_key(name: &str, partition: u32) -> String {
    format!("{name}/dead-letters/{partition}")
}

/// Committed positions, in memory and in [`POSITIONS_TOPIC`].
pub(crate) struct PositionStore {
    log: Arc<dyn EventLog>,
    positions: Mutex<HashMap<String, Position>>,
}

impl PositionStore {
    /// Replays [`POSITIONS_TOPIC`].
    pub fn load(log: Arc<dyn EventLog>) -> Result<Self, LogFailure> {
        let mut positions = HashMap::new();
        for record in read_all(log.as_ref(), POSITIONS_TOPIC, 0)? {
            let Some(key) = record.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
            match record.value.as_deref().map(serde_json::from_slice::<Position>) {
                Some(Ok(position)) => {
                    positions.insert(key.to_string(), position);
                }
                None => {
                    positions.remove(key);
                }
                Some(Err(e)) => tracing::warn!(key, error = %e, "skipping an unreadable function position"),
            }
        }
        Ok(Self { log, positions: Mutex::new(positions) })
    }

    /// The position under `key` if it is one in `topic`.
    pub fn get(&self, key: &str, topic: &str) -> Option<i64> {
        let positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        positions.get(key).filter(|p| p.topic == topic).map(|p| p.offset)
    }

    /// Writes positions (`None`: forget the key), then remembers them.
    pub fn commit(&self, updates: Vec<(String, Option<Position>)>) -> Result<(), LogFailure> {
        if updates.is_empty() {
            return Ok(());
        }
        let at = now_ms();
        let records: Vec<OutRecord> = updates
            .iter()
            .map(|(key, position)| OutRecord {
                key: Some(Bytes::from(key.clone().into_bytes())),
                value: position.as_ref().map(|p| Bytes::from(serde_json::to_vec(p).unwrap_or_default())),
                headers: Vec::new(),
                timestamp: at,
            })
            .collect();
        // Not fsynced: a lost commit only means events are handled again (at least once);
        // outputs are synced before their position is committed.
        self.log.append(POSITIONS_TOPIC, 0, &records, false)?;
        let mut positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        for (key, position) in updates {
            match position {
                Some(p) => positions.insert(key, p),
                None => positions.remove(&key),
            };
        }
        Ok(())
    }

    /// Keys of a function's positions (to forget them on delete).
    pub fn keys_of(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}/");
        let positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        positions.keys().filter(|k| k.starts_with(&prefix)).cloned().collect()
    }
}

/// Every record of a partition from its log start to its end offset now.
pub(crate) fn read_all(log: &dyn EventLog, topic: &str, partition: u32) -> Result<Vec<LogRecord>, LogFailure> {
    let (start, end) = log.offsets(topic, partition)?;
    read_range(log, topic, partition, start, end)
}

/// Records of a partition in `from..end`.
pub(crate) fn read_range(
    log: &dyn EventLog,
    topic: &str,
    partition: u32,
    from: i64,
    end: i64,
) -> Result<Vec<LogRecord>, LogFailure> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < end {
        let batch = log.read(topic, partition, offset, TRIGGER_READ_BYTES_MAX)?;
        if batch.next_offset <= offset {
            break;
        }
        out.extend(batch.records.into_iter().filter(|r| r.offset < end));
        offset = batch.next_offset;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_stored_by_hash_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = ComponentStore::open(dir.path()).unwrap();
        let sha = store.put(b"\0asm component").unwrap();
        assert_eq!(sha.len(), 64);
        assert_eq!(store.put(b"\0asm component").unwrap(), sha);
        assert_eq!(store.get(&sha).unwrap(), b"\0asm component");
        std::fs::write(dir.path().join(format!("{sha}.wasm")), b"tampered").unwrap();
        assert!(matches!(store.get(&sha), Err(StoreError::Corrupt { .. })));
        store.remove(&sha);
        assert!(matches!(store.get(&sha), Err(StoreError::Io { .. })));
    }
}
