//! The storage trait under the log (open, append, read, sync, truncate, rename, remove), its
//! real-filesystem implementation, and a bounded LRU of open file handles.
//!
//! Everything the log writes goes through [`Storage`], so tests can swap in
//! [`crate::SimStorage`] to drop unsynced writes, tear writes, and fail with EIO or ENOSPC.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An open file: positional reads and writes, so one handle serves many readers.
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write so far durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    fn truncate(&self, len: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
}

/// A directory tree of files.
pub trait Storage: Send + Sync {
    /// Opens `path` for reading and writing, creating it when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the creation, renaming and removal of `dir`'s entries durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

struct FsFile(File);

impl StorageFile for FsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.0.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl Storage for FsStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path)?;
        Ok(Arc::new(FsFile(file)))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// A bounded cache of open handles, least recently used evicted first. Evicting a handle in
/// use is harmless: its holder keeps it alive until done.
pub(crate) struct FileCache {
    storage: Arc<dyn Storage>,
    capacity: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    tick: u64,
    handles: HashMap<PathBuf, (Arc<dyn StorageFile>, u64)>,
}

impl FileCache {
    pub(crate) fn new(storage: Arc<dyn Storage>, capacity: usize) -> FileCache {
        FileCache { storage, capacity: capacity.max(1), inner: Mutex::new(CacheInner::default()) }
    }

    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The handle of `path`, opening (and creating, if asked) it when not cached.
    pub(crate) fn get(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut inner = self.inner.lock().expect("file cache lock");
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((file, used)) = inner.handles.get_mut(path) {
            *used = tick;
            return Ok(file.clone());
        }
        let file = self.storage.open(path, create)?;
        if inner.handles.len() >= self.capacity {
            let oldest = inner.handles.iter().min_by_key(|(_, (_, used))| *used).map(|(p, _)| p.clone());
            if let Some(oldest) = oldest {
                inner.handles.remove(&oldest);
            }
        }
        inner.handles.insert(path.to_path_buf(), (file.clone(), tick));
        Ok(file)
    }

    /// Forgets `path` (after it was removed or replaced).
    pub(crate) fn forget(&self, path: &Path) {
        self.inner.lock().expect("file cache lock").handles.remove(path);
    }

    /// Forgets every handle under `dir`.
    pub(crate) fn forget_dir(&self, dir: &Path) {
        self.inner.lock().expect("file cache lock").handles.retain(|p, _| !p.starts_with(dir));
    }
}

/// Writes `contents` to `path` atomically: a temporary file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomically(storage: &dyn Storage, path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    if storage.exists(&tmp) {
        storage.remove_file(&tmp)?;
    }
    let file = storage.open(&tmp, true)?;
    file.truncate(0)?;
    file.write_at(contents, 0)?;
    file.sync()?;
    drop(file);
    storage.rename(&tmp, path)?;
    storage.sync_dir(path.parent().expect("a file has a parent directory"))
}

/// Reads a whole small file.
pub(crate) fn read_all(storage: &dyn Storage, path: &Path) -> io::Result<Vec<u8>> {
    let file = storage.open(path, false)?;
    let len = file.len()? as usize;
    let mut buf = vec![0; len];
    let n = file.read_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}
