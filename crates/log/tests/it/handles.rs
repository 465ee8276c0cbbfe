//! The bounded file-handle cache: with `file_handles_max = 16`, a thousand partitions on the
//! real filesystem are all appendable and readable, also after a restart, while the store
//! never holds more than 16 files (plus the one or two a call is using) open at once.
//! (10,000 partitions work too but take ~20 s in a debug build, mostly directory fsyncs.)

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use runnel_log::{FsStorage, Log, LogConfig, Storage, StorageFile, TopicConfig};

use crate::common::*;

/// Real files, counting how many are open at once.
#[derive(Default)]
struct Counting {
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

struct CountedFile {
    inner: Arc<dyn StorageFile>,
    open: Arc<AtomicUsize>,
}

impl Drop for CountedFile {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StorageFile for CountedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

impl Storage for Counting {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let inner = FsStorage.open(path, create)?;
        let now = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Ok(Arc::new(CountedFile { inner, open: self.open.clone() }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        FsStorage.create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        FsStorage.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsStorage.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove_dir_all(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FsStorage.sync_dir(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        FsStorage.exists(path)
    }
}

const PARTITIONS: u32 = 1_000;
const HANDLES: usize = 16;
/// Handles held outside the cache for the duration of one call (a file being written
/// atomically, a segment being read after its cache entry was evicted).
const TRANSIENT: usize = 2;

#[test]
fn hundreds_of_partitions_with_sixteen_handles() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LogConfig::new(dir.path());
    config.file_handles_max = HANDLES;
    let storage = Arc::new(Counting::default());
    let (open, peak) = (storage.open.clone(), storage.peak.clone());
    let log = Log::open_with(config.clone(), storage).unwrap();
    log.create_topic("many", PARTITIONS, TopicConfig::default()).unwrap();
    for round in 0..2 {
        for i in 0..PARTITIONS {
            let p = log.partition("many", i).unwrap();
            let a = p.append(&batch(&[rec(&format!("p{i}"), &format!("r{round}"), 0)]), 0).unwrap();
            assert_eq!(a.base_offset, round);
        }
    }
    for i in (0..PARTITIONS).rev() {
        let p = log.partition("many", i).unwrap();
        p.sync_to(2).unwrap();
        assert_eq!(values(&p), vec![(0, "r0".to_string()), (1, "r1".to_string())], "partition {i}");
    }
    assert!(peak.load(Ordering::SeqCst) <= HANDLES + TRANSIENT, "peak {} open files", peak.load(Ordering::SeqCst));
    log.shutdown().unwrap();
    drop(log);
    assert_eq!(open.load(Ordering::SeqCst), 0, "every handle is closed with the store");

    // Reopening recovers every partition under the same bound.
    let storage = Arc::new(Counting::default());
    let peak = storage.peak.clone();
    let log = Log::open_with(config, storage).unwrap();
    for i in 0..PARTITIONS {
        let p = log.partition("many", i).unwrap();
        assert_eq!(p.high_watermark(), 2, "partition {i}");
        assert_eq!(read_everything(&p).len(), 2);
    }
    assert!(peak.load(Ordering::SeqCst) <= HANDLES + TRANSIENT, "peak {} open files", peak.load(Ordering::SeqCst));
}
