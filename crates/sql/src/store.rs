//! The durable state of a stateful persistent query (aggregations, joins): a compacted
//! changelog topic per query, and a local snapshot file beside it.
//!
//! Every round of a query ends with one [`QueryStore::commit`]: the state entries the round
//! changed and the query's input positions, appended to the changelog as a single record
//! batch. A batch is written whole or not at all (recovery truncates a torn tail by CRC), so the
//! state and the positions always agree: after a crash the query restarts from the positions
//! of the last committed round with exactly the state that round left, and no input record is
//! counted twice or lost. Outputs are appended before the commit, so a crash between the two
//! repeats the outputs of one round (at least once); table outputs are upserts of the same
//! values, so the table they describe is unchanged.
//!
//! The snapshot file holds every entry as of a changelog offset, written atomically (temporary
//! file, fsync, rename, fsync of the directory) and checked by CRC-32C at open. A restart loads
//! the snapshot when it is intact and replays only the changelog after it; otherwise the state
//! is rebuilt from the whole changelog (compacted, so its size follows the number of keys).
//!
//! Snapshot layout: `RNLSTAT1`, the changelog offset it covers (u64), the entry count (u64),
//! then per entry a u32 key length, the key, a u32 value length and the value, and last the
//! CRC-32C of everything before it (u32). Integers are big-endian.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::eventlog::{EventLog, OutRecord};

/// Most bytes one round's changelog batch may hold (the changelog topic's `max.message.bytes`).
pub const CHANGELOG_BATCH_BYTES_MAX: u32 = 64 << 20;
/// Time between snapshots of a query whose state changes.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(60);
/// Changelog records after which a snapshot is taken sooner than [`SNAPSHOT_INTERVAL`].
pub const SNAPSHOT_CHANGES: u64 = 200_000;
/// Bytes read from the changelog per read while restoring.
const RESTORE_READ_BYTES: usize = 4 << 20;
const SNAPSHOT_MAGIC: &[u8; 8] = b"RNLSTAT1";
/// The changelog key of the positions entry (store keys start with a store id below it).
pub const POSITIONS_KEY: &[u8] = &[0xff];

/// Why a query's state could not be read or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

fn err(message: impl Into<String>) -> StoreError {
    StoreError(message.into())
}

/// Where a query stands: the next offset of every input partition, and its stream time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// (input index, partition) -> next offset to read.
    pub positions: BTreeMap<(u32, u32), i64>,
    /// The greatest record timestamp the query has seen (windows close by it).
    pub stream_time: i64,
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.positions.len() * 16);
        out.extend_from_slice(&self.stream_time.to_be_bytes());
        out.extend_from_slice(&(self.positions.len() as u32).to_be_bytes());
        for ((input, partition), offset) in &self.positions {
            out.extend_from_slice(&input.to_be_bytes());
            out.extend_from_slice(&partition.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, StoreError> {
        let mut r = Reader(bytes);
        let stream_time = r.i64()?;
        let n = r.u32()? as usize;
        if n.saturating_mul(16) > r.0.len() {
            return Err(err("positions entry is truncated"));
        }
        let mut positions = BTreeMap::new();
        for _ in 0..n {
            let (input, partition, offset) = (r.u32()?, r.u32()?, r.i64()?);
            positions.insert((input, partition), offset);
        }
        Ok(Checkpoint { positions, stream_time })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], StoreError> {
        if self.0.len() < n {
            return Err(err("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| err("truncated"))?))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| err("truncated"))?))
    }
    fn i64(&mut self) -> Result<i64, StoreError> {
        Ok(self.u64()? as i64)
    }
}

/// What a query's state was when it was opened.
#[derive(Debug, Default)]
pub struct Restored {
    /// Every live entry (store keys), positions excluded.
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The positions of the last committed round, if the query ever committed one.
    pub checkpoint: Option<Checkpoint>,
    /// Whether a snapshot was loaded (then only the changelog after it was read).
    pub from_snapshot: bool,
    /// Changelog records read.
    pub changelog_records: u64,
}

/// The changelog and snapshot of one query.
pub struct QueryStore {
    log: Arc<dyn EventLog>,
    topic: String,
    snapshot: Option<PathBuf>,
    changes_since_snapshot: u64,
    last_snapshot: Instant,
}

/// The changelog topic of a query (internal: clients cannot write to it).
pub fn changelog_topic(query_id: &str) -> String {
    format!("__runnel_sql_{query_id}_changelog")
}

fn snapshot_path(state_dir: &Path, query_id: &str) -> PathBuf {
    state_dir.join(format!("{query_id}.snapshot"))
}

impl QueryStore {
    /// Opens (creating if needed) the query's changelog and restores its state: from the
    /// snapshot and the changelog after it when the snapshot is intact, else from the whole
    /// changelog.
    pub fn open(
        log: Arc<dyn EventLog>,
        query_id: &str,
        state_dir: Option<&Path>,
    ) -> Result<(QueryStore, Restored), StoreError> {
        let topic = changelog_topic(query_id);
        log.create_internal_topic(&topic, 1, true, CHANGELOG_BATCH_BYTES_MAX)
            .map_err(|e| err(format!("changelog {topic}: {e}")))?;
        let snapshot = state_dir.map(|d| snapshot_path(d, query_id));
        let (start, end) = log.offsets(&topic, 0).map_err(|e| err(format!("changelog {topic}: {e}")))?;
        let mut restored = Restored::default();
        let mut from = start;
        if let Some(path) = &snapshot {
            match read_snapshot(path) {
                Ok(Some((covered, entries))) if covered <= end => {
                    for (k, v) in entries {
                        if k == POSITIONS_KEY {
                            restored.checkpoint = Some(Checkpoint::decode(&v)?);
                        } else {
                            restored.entries.insert(k, v);
                        }
                    }
                    restored.from_snapshot = true;
                    from = covered.max(start);
                }
                Ok(Some((covered, _))) => {
                    tracing::warn!(snapshot = %path.display(), covered, end, "state snapshot is ahead of its changelog; rebuilding from the changelog");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(snapshot = %path.display(), error = %e, "state snapshot unreadable; rebuilding from the changelog");
                }
            }
        }
        let mut at = from;
        while at < end {
            let batch =
                log.read(&topic, 0, at, RESTORE_READ_BYTES).map_err(|e| err(format!("changelog {topic}: {e}")))?;
            if batch.next_offset <= at {
                break;
            }
            at = batch.next_offset;
            for r in batch.records {
                restored.changelog_records += 1;
                let Some(key) = r.key else { continue };
                if key.as_ref() == POSITIONS_KEY {
                    if let Some(v) = &r.value {
                        restored.checkpoint = Some(Checkpoint::decode(v)?);
                    }
                    continue;
                }
                match r.value {
                    Some(v) => restored.entries.insert(key.to_vec(), v.to_vec()),
                    None => restored.entries.remove(key.as_ref()),
                };
            }
        }
        let store = QueryStore {
            log,
            topic,
            snapshot,
            changes_since_snapshot: restored.changelog_records,
            last_snapshot: Instant::now(),
        };
        Ok((store, restored))
    }

    /// Appends one round's state changes and positions as a single batch, durably.
    pub fn commit(
        &mut self,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        let now = crate::functions::now_ms();
        let mut records: Vec<OutRecord> = changes
            .into_iter()
            .map(|(k, v)| OutRecord {
                key: Some(k.into()),
                value: v.map(Into::into),
                headers: Vec::new(),
                timestamp: now,
            })
            .collect();
        self.changes_since_snapshot += records.len() as u64 + 1;
        records.push(OutRecord {
            key: Some(POSITIONS_KEY.to_vec().into()),
            value: Some(checkpoint.encode().into()),
            headers: Vec::new(),
            timestamp: now,
        });
        self.log
            .append_atomic(&self.topic, 0, &records)
            .map(|_| ())
            .map_err(|e| err(format!("changelog {}: {e}", self.topic)))
    }

    /// Whether a snapshot is due.
    pub fn snapshot_due(&self) -> bool {
        self.snapshot.is_some()
            && self.changes_since_snapshot > 0
            && (self.changes_since_snapshot >= SNAPSHOT_CHANGES || self.last_snapshot.elapsed() >= SNAPSHOT_INTERVAL)
    }

    /// Writes a snapshot of every entry (given by `dump`) as of the changelog's current end.
    /// Call it between rounds, after [`QueryStore::commit`].
    pub fn write_snapshot(
        &mut self,
        checkpoint: &Checkpoint,
        dump: impl FnOnce(&mut dyn FnMut(&[u8], &[u8])),
    ) -> Result<(), StoreError> {
        let Some(path) = self.snapshot.clone() else { return Ok(()) };
        let (_, end) = self.log.offsets(&self.topic, 0).map_err(|e| err(e.0))?;
        let mut body = Vec::new();
        body.extend_from_slice(SNAPSHOT_MAGIC);
        body.extend_from_slice(&(end as u64).to_be_bytes());
        body.extend_from_slice(&[0; 8]); // entry count, filled in below
        let mut count = 0u64;
        let mut put = |k: &[u8], v: &[u8]| {
            body.extend_from_slice(&(k.len() as u32).to_be_bytes());
            body.extend_from_slice(k);
            body.extend_from_slice(&(v.len() as u32).to_be_bytes());
            body.extend_from_slice(v);
            count += 1;
        };
        put(POSITIONS_KEY, &checkpoint.encode());
        dump(&mut put);
        body[16..24].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        write_atomically(&path, &body).map_err(|e| err(format!("snapshot {}: {e}", path.display())))?;
        self.changes_since_snapshot = 0;
        self.last_snapshot = Instant::now();
        Ok(())
    }

    /// Removes a query's changelog topic and snapshot (DROP, REPLAY).
    pub fn destroy(log: &dyn EventLog, query_id: &str, state_dir: Option<&Path>) -> Result<(), StoreError> {
        if let Some(dir) = state_dir {
            let path = snapshot_path(dir, query_id);
            match std::fs::remove_file(&path) {
                Ok(()) => sync_dir(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(format!("{}: {e}", path.display()))),
            }
        }
        let topic = changelog_topic(query_id);
        if log.partitions(&topic).is_some() {
            log.delete_topic(&topic).map_err(|e| err(format!("changelog {topic}: {e}")))?;
        }
        Ok(())
    }
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The snapshot's covered changelog offset and entries; `None` when there is no snapshot.
fn read_snapshot(path: &Path) -> Result<Option<(i64, Entries)>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    if bytes.len() < 28 || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(err("not a state snapshot"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_be_bytes(crc.try_into().map_err(|_| err("truncated"))?);
    if crc32c::crc32c(body) != crc {
        return Err(err("CRC mismatch"));
    }
    let mut r = Reader(&body[8..]);
    let covered = r.i64()?;
    let count = r.u64()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let klen = r.u32()? as usize;
        let k = r.take(klen)?.to_vec();
        let vlen = r.u32()? as usize;
        let v = r.take(vlen)?.to_vec();
        entries.push((k, v));
    }
    if !r.0.is_empty() {
        return Err(err("trailing bytes"));
    }
    Ok(Some((covered, entries)))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("snapshot.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_truncation() {
        let cp = Checkpoint { positions: BTreeMap::from([((0, 0), 5), ((1, 3), 9)]), stream_time: 1234 };
        let bytes = cp.encode();
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), cp);
        for n in 0..bytes.len() {
            assert!(Checkpoint::decode(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn damaged_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.snapshot");
        let mut body = Vec::new();
        body.extend_from_slice(SNAPSHOT_MAGIC);
        body.extend_from_slice(&7u64.to_be_bytes());
        body.extend_from_slice(&1u64.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.push(1);
        body.extend_from_slice(&2u32.to_be_bytes());
        body.extend_from_slice(&[2, 3]);
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        write_atomically(&path, &body).unwrap();
        let (covered, entries) = read_snapshot(&path).unwrap().unwrap();
        assert_eq!((covered, entries), (7, vec![(vec![1], vec![2, 3])]));
        body[20] ^= 1;
        std::fs::write(&path, &body).unwrap();
        assert!(read_snapshot(&path).is_err());
    }
}
