//! The broker's own small state files in the data directory: the cluster id and the
//! producer-id reservation, each written atomically (temporary file, fsync, rename).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::BrokerError;
use crate::limits::PRODUCER_ID_BLOCK;

const CLUSTER_ID_FILE: &str = "cluster-id";
const PRODUCER_IDS_FILE: &str = "producer-ids";
/// Characters of a cluster id (a base64url UUID, as Kafka prints them).
const CLUSTER_ID_CHARS: usize = 22;

fn state_err(path: &Path) -> impl FnOnce(io::Error) -> BrokerError + '_ {
    move |source| BrokerError::State { path: path.to_path_buf(), source }
}

/// Writes `contents` to `path` so that a crash leaves either the old or the new file.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The cluster id, created on first start and kept in `<data_dir>/cluster-id`.
pub(crate) fn cluster_id(data_dir: &Path) -> Result<String, BrokerError> {
    let path = data_dir.join(CLUSTER_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(state_err(&path)(e)),
    }
    let mut uuid = [0u8; 16];
    uuid.iter_mut().for_each(|b| *b = fastrand::u8(..));
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let id: String = base64url(&uuid).chars().take(CLUSTER_ID_CHARS).collect();
    write_atomically(&path, id.as_bytes()).map_err(state_err(&path))?;
    Ok(id)
}

struct Reservation {
    next: i64,
    /// Ids below this are persisted as used; a restart starts here.
    reserved_until: i64,
}

/// Hands out producer ids for idempotent producers, unique across restarts: ids are
/// reserved in blocks of [`PRODUCER_ID_BLOCK`] whose end is persisted before any id of the
/// block is given out, and a restart also starts above every id seen in the log.
pub(crate) struct ProducerIds {
    path: PathBuf,
    state: Mutex<Reservation>,
}

impl ProducerIds {
    pub(crate) fn open(data_dir: &Path, seen_max: i64) -> Result<ProducerIds, BrokerError> {
        let path = data_dir.join(PRODUCER_IDS_FILE);
        let persisted = match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<i64>().map_err(|e| {
                state_err(&path)(io::Error::new(io::ErrorKind::InvalidData, format!("not a producer id: {e}")))
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(state_err(&path)(e)),
        };
        let next = persisted.max(seen_max.saturating_add(1)).max(0);
        Ok(ProducerIds { path, state: Mutex::new(Reservation { next, reserved_until: next }) })
    }

    /// Whether `id` may have been handed out (by this run or an earlier one).
    pub(crate) fn issued(&self, id: i64) -> bool {
        (0..self.state.lock().unwrap_or_else(|e| e.into_inner()).next).contains(&id)
    }

    /// A producer id never handed out before. Blocking: may fsync the reservation file.
    pub(crate) fn allocate(&self) -> io::Result<i64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.next >= state.reserved_until {
            let until =
                state.next.checked_add(PRODUCER_ID_BLOCK).ok_or_else(|| io::Error::other("producer ids exhausted"))?;
            write_atomically(&self.path, until.to_string().as_bytes())?;
            state.reserved_until = until;
        }
        let id = state.next;
        state.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_ids_are_unique_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path(), -1).unwrap();
        let a = ids.allocate().unwrap();
        let b = ids.allocate().unwrap();
        assert_eq!((a, b), (0, 1));
        drop(ids);
        let ids = ProducerIds::open(dir.path(), -1).unwrap();
        assert!(ids.allocate().unwrap() > b);
        let ids = ProducerIds::open(dir.path(), 5_000).unwrap();
        assert_eq!(ids.allocate().unwrap(), 5_001);
    }

    #[test]
    fn cluster_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = cluster_id(dir.path()).unwrap();
        assert_eq!(a.len(), CLUSTER_ID_CHARS);
        assert_eq!(cluster_id(dir.path()).unwrap(), a);
    }
}
