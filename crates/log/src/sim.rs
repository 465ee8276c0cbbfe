//! An in-memory [`Storage`] that simulates what a disk and a crash can do, for tests: writes
//! not yet fsynced may vanish or be torn at a crash, directory entries not yet made durable
//! with a directory fsync disappear, and writes or fsyncs can be made to fail with EIO or
//! ENOSPC.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::storage::{Storage, StorageFile};

#[derive(Default)]
struct FileData {
    /// What a reader sees now.
    current: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// `read_at` calls on this file so far.
    reads: u64,
}

#[derive(Default)]
struct Faults {
    /// Fail this many upcoming writes with EIO.
    write_errors: u32,
    /// Fail this many upcoming fsyncs with EIO.
    sync_errors: u32,
    /// Total bytes of all files above which writes fail with ENOSPC.
    capacity_bytes: Option<u64>,
    writes: u64,
    syncs: u64,
    /// Changes (writes, fsyncs, truncations, creations, renames, removals) still allowed
    /// before the disk freezes: every later one fails with EIO and changes nothing.
    changes_left: Option<u64>,
    /// Whether the freeze refused a change.
    refused: bool,
}

impl Faults {
    /// Counts one change against a freeze; an error when the disk is frozen.
    fn change(&mut self) -> io::Result<()> {
        match &mut self.changes_left {
            Some(0) => {
                self.refused = true;
                Err(eio())
            }
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

#[derive(Default)]
struct State {
    /// The namespace as it is now.
    files: HashMap<PathBuf, Arc<Mutex<FileData>>>,
    /// The namespace as a crash would leave it.
    durable_files: HashMap<PathBuf, Arc<Mutex<FileData>>>,
}

/// Simulated storage with fault injection; cheap to clone (clones share the same disk).
#[derive(Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
    faults: Arc<Mutex<Faults>>,
}

struct SimFile {
    data: Arc<Mutex<FileData>>,
    state: Arc<Mutex<State>>,
    faults: Arc<Mutex<Faults>>,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl SimStorage {
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    /// The next `n` writes fail with EIO (and write nothing).
    pub fn fail_writes(&self, n: u32) {
        self.faults.lock().unwrap().write_errors = n;
    }

    /// The next `n` fsyncs fail with EIO (and make nothing durable).
    pub fn fail_syncs(&self, n: u32) {
        self.faults.lock().unwrap().sync_errors = n;
    }

    /// Writes that would make the files' total size exceed `bytes` fail with ENOSPC, after
    /// writing the part that fits (a short write, as a real disk's write can be).
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.faults.lock().unwrap().capacity_bytes = bytes;
    }

    /// After `changes` more changes to the disk (writes, fsyncs, truncations, file creations,
    /// renames, removals, directory fsyncs), every change fails with EIO and does nothing, as
    /// if the process died right there; [`SimStorage::crash`] then shows what a crash at that
    /// step leaves. `None` lifts the freeze.
    pub fn freeze_after(&self, changes: Option<u64>) {
        let mut faults = self.faults.lock().unwrap();
        faults.changes_left = changes;
        faults.refused = false;
    }

    /// Whether a freeze set by [`SimStorage::freeze_after`] has refused a change yet.
    pub fn frozen(&self) -> bool {
        self.faults.lock().unwrap().refused
    }

    /// `read_at` calls on the file now at `path` so far (0 when there is no such file).
    pub fn reads_of(&self, path: &Path) -> u64 {
        let state = self.state.lock().unwrap();
        state.files.get(path).map(|d| d.lock().unwrap().reads).unwrap_or(0)
    }

    /// Bytes of all files now (what [`SimStorage::set_capacity`] limits).
    pub fn used_bytes(&self) -> u64 {
        SimStorage::total_bytes(&self.state.lock().unwrap())
    }

    /// (writes, fsyncs) performed so far.
    pub fn counts(&self) -> (u64, u64) {
        let f = self.faults.lock().unwrap();
        (f.writes, f.syncs)
    }

    /// Simulates power loss. Files keep their durable contents; when `tear` is given, each file
    /// also keeps a prefix of its unsynced bytes, of a length chosen by the seeded generator,
    /// whose last byte may be garbage. Directory entries not made durable are lost.
    pub fn crash(&self, tear: Option<&mut fastrand::Rng>) {
        let mut state = self.state.lock().unwrap();
        let mut rng = tear;
        let durable = state.durable_files.clone();
        for data in durable.values() {
            let mut d = data.lock().unwrap();
            let mut kept = d.durable.clone();
            if let Some(rng) = rng.as_deref_mut()
                && d.current.len() > kept.len()
                && d.current.starts_with(&kept)
            {
                let extra = rng.usize(0..=d.current.len() - kept.len());
                kept.extend_from_slice(&d.current[d.durable.len()..d.durable.len() + extra]);
                if extra > 0 && rng.bool() {
                    let last = kept.len() - 1;
                    kept[last] ^= 0x5a;
                }
            }
            d.current = kept.clone();
            d.durable = kept;
        }
        state.files = durable;
        let mut faults = self.faults.lock().unwrap();
        faults.write_errors = 0;
        faults.sync_errors = 0;
        faults.changes_left = None;
    }

    /// Flips the bits of the byte at `offset` of `path`, in what a reader sees now and in what
    /// survives a crash alike (bit rot on the medium). Panics when there is no such byte.
    pub fn corrupt(&self, path: &Path, offset: u64) {
        let state = self.state.lock().unwrap();
        let data = state.files.get(path).unwrap_or_else(|| panic!("{} does not exist", path.display()));
        let mut d = data.lock().unwrap();
        let at = usize::try_from(offset).expect("offset fits in memory");
        assert!(at < d.current.len(), "{} has only {} bytes", path.display(), d.current.len());
        d.current[at] ^= 0xff;
        if at < d.durable.len() {
            d.durable[at] ^= 0xff;
        }
    }

    fn total_bytes(state: &State) -> u64 {
        state.files.values().map(|d| d.lock().unwrap().current.len() as u64).sum()
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut d = self.data.lock().unwrap();
        d.reads += 1;
        let start = (offset as usize).min(d.current.len());
        let n = buf.len().min(d.current.len() - start);
        buf[..n].copy_from_slice(&d.current[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut buf = buf;
        let mut full = false;
        {
            let mut faults = self.faults.lock().unwrap();
            faults.writes += 1;
            faults.change()?;
            if faults.write_errors > 0 {
                faults.write_errors -= 1;
                return Err(eio());
            }
            if let Some(cap) = faults.capacity_bytes {
                let state = self.state.lock().unwrap();
                let len = self.data.lock().unwrap().current.len() as u64;
                let grow = (offset + buf.len() as u64).saturating_sub(len);
                let total = SimStorage::total_bytes(&state);
                if total + grow > cap {
                    // What fits is written: bytes over existing ones, and growth up to `cap`.
                    let room = cap.saturating_sub(total);
                    let fits = (len.saturating_sub(offset) + room).min(buf.len() as u64) as usize;
                    buf = &buf[..fits];
                    full = true;
                }
            }
        }
        let mut d = self.data.lock().unwrap();
        let end = offset as usize + buf.len();
        if d.current.len() < end {
            d.current.resize(end, 0);
        }
        d.current[offset as usize..end].copy_from_slice(buf);
        if full {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        {
            let mut faults = self.faults.lock().unwrap();
            faults.syncs += 1;
            faults.change()?;
            if faults.sync_errors > 0 {
                faults.sync_errors -= 1;
                return Err(eio());
            }
        }
        let mut d = self.data.lock().unwrap();
        d.durable = d.current.clone();
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.faults.lock().unwrap().change()?;
        self.data.lock().unwrap().current.resize(len as usize, 0);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.lock().unwrap().current.len() as u64)
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

impl Storage for SimStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        // The fault lock is never taken while the state lock is held (writes take them in the
        // other order).
        if create && !self.state.lock().unwrap().files.contains_key(path) {
            self.faults.lock().unwrap().change()?;
        }
        let mut state = self.state.lock().unwrap();
        let data = match state.files.get(path) {
            Some(d) => d.clone(),
            None if create => {
                let d = Arc::new(Mutex::new(FileData::default()));
                state.files.insert(path.to_path_buf(), d.clone());
                d
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(SimFile { data, state: self.state.clone(), faults: self.faults.clone() }))
    }

    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        // Directories exist implicitly as prefixes of file paths.
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock().unwrap();
        let mut names: Vec<String> = state
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(dir).ok())
            .filter_map(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.lock().unwrap().change()?;
        let mut state = self.state.lock().unwrap();
        let moved: Vec<PathBuf> = state.files.keys().filter(|p| p.starts_with(from)).cloned().collect();
        if moved.is_empty() {
            return Err(not_found(from));
        }
        for p in moved {
            let data = state.files.remove(&p).expect("listed");
            let dest = to.join(p.strip_prefix(from).expect("prefix"));
            let dest = if dest.as_os_str().is_empty() || p == from { to.to_path_buf() } else { dest };
            state.files.insert(dest, data);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.faults.lock().unwrap().change()?;
        self.state.lock().unwrap().files.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.faults.lock().unwrap().change()?;
        self.state.lock().unwrap().files.retain(|p, _| !p.starts_with(path));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        {
            let mut faults = self.faults.lock().unwrap();
            faults.syncs += 1;
            faults.change()?;
            if faults.sync_errors > 0 {
                faults.sync_errors -= 1;
                return Err(eio());
            }
        }
        let mut state = self.state.lock().unwrap();
        // Entries directly in `dir`, and (as renames of directories are made durable by the
        // parent's fsync) everything below directories directly in `dir`.
        let current: Vec<(PathBuf, Arc<Mutex<FileData>>)> =
            state.files.iter().filter(|(p, _)| p.starts_with(dir)).map(|(p, d)| (p.clone(), d.clone())).collect();
        state.durable_files.retain(|p, _| !p.starts_with(dir));
        for (p, d) in current {
            state.durable_files.insert(p, d);
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.state.lock().unwrap();
        state.files.keys().any(|p| p.starts_with(path))
    }
}
