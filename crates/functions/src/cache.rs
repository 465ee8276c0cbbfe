//! On-disk cache of precompiled components, keyed by content hash.
//!
//! Compiling a component with Cranelift takes milliseconds to seconds; loading a compiled
//! artifact takes microseconds. A deploy of bytes already compiled by an engine with the
//! same settings therefore reuses the artifact.
//!
//! File `<key>.cwasm` in the cache directory, where `key` is the hex SHA-256 of the crate
//! version, wasmtime's engine compatibility hash and the component's bytes:
//!
//! ```text
//! +-------------------------------+--------------------------+------------------+
//! | artifact (N bytes, wasmtime's | SHA-256 of the artifact  | magic "RNLFNC01" |
//! | precompiled ELF image)        | (32 bytes)               | (8 bytes)        |
//! +-------------------------------+--------------------------+------------------+
//! ```
//!
//! wasmtime checks an artifact's header and engine settings but not its code, and loading
//! a damaged artifact is undefined behaviour. So the checksum is verified over the exact
//! bytes that are then loaded (read once into memory: checking a file and mapping it
//! afterwards would leave a window for it to change); a mismatch is reported and the entry
//! rebuilt, never loaded. Files are written to a temporary name, synced, then renamed, so a
//! crash leaves either no entry or a whole one.

use std::fs;
use std::hash::Hasher;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"RNLFNC01";
const CHECKSUM_BYTES: usize = 32;
const TRAILER_BYTES: usize = CHECKSUM_BYTES + MAGIC.len();

/// Makes temporary file names unique among concurrent deploys of one process.
static TEMPORARY_FILES: AtomicU64 = AtomicU64::new(0);

/// Why a cache entry was not used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    #[error("cannot read or write compiled-component cache {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("compiled-component cache entry {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

/// A directory of precompiled artifacts owned by this runtime.
#[derive(Debug, Clone)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
}

/// Feeds `Hash` implementations (wasmtime's compatibility hash) into SHA-256.
struct Sha256Hasher<'a>(&'a mut Sha256);

impl Hasher for Sha256Hasher<'_> {
    fn finish(&self) -> u64 {
        0 // unused: only `write` matters
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ArtifactCache {
    pub(crate) fn open(dir: &Path) -> Result<Self, CacheError> {
        fs::create_dir_all(dir).map_err(|source| CacheError::Io { path: dir.to_path_buf(), source })?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    /// The cache key of `wasm` compiled by `engine`.
    pub(crate) fn key(engine: &wasmtime::Engine, wasm: &[u8]) -> String {
        let mut sha = Sha256::new();
        sha.update(b"runnel-functions ");
        sha.update(env!("CARGO_PKG_VERSION").as_bytes());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut Sha256Hasher(&mut sha));
        sha.update((wasm.len() as u64).to_le_bytes());
        sha.update(wasm);
        hex(&sha.finalize())
    }

    pub(crate) fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The verified artifact under `key`, `Ok(None)` if there is none.
    pub(crate) fn load(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let path = self.path(key);
        let mut bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::Io { path, source }),
        };
        let corrupt = |detail: String| CacheError::Corrupt { path: path.clone(), detail };
        let Some(artifact_len) = bytes.len().checked_sub(TRAILER_BYTES) else {
            return Err(corrupt(format!("{} bytes is shorter than the {TRAILER_BYTES}-byte trailer", bytes.len())));
        };
        let (artifact, trailer) = bytes.split_at(artifact_len);
        let (checksum, magic) = trailer.split_at(CHECKSUM_BYTES);
        if magic != MAGIC {
            return Err(corrupt("bad magic".to_string()));
        }
        let actual = Sha256::digest(artifact);
        if actual.as_slice() != checksum {
            return Err(corrupt(format!("checksum {} does not match the stored {}", hex(&actual), hex(checksum))));
        }
        bytes.truncate(artifact_len);
        Ok(Some(bytes))
    }

    /// Writes `artifact` under `key`, atomically.
    pub(crate) fn store(&self, key: &str, artifact: &[u8]) -> Result<(), CacheError> {
        let path = self.path(key);
        let tmp = self.dir.join(format!(
            "{key}.cwasm.tmp{}-{}",
            std::process::id(),
            TEMPORARY_FILES.fetch_add(1, Ordering::Relaxed)
        ));
        let io_err = |source| CacheError::Io { path: tmp.clone(), source };
        let mut file = fs::File::create(&tmp).map_err(io_err)?;
        file.write_all(artifact).map_err(io_err)?;
        file.write_all(&Sha256::digest(artifact)).map_err(io_err)?;
        file.write_all(MAGIC).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        drop(file);
        fs::rename(&tmp, &path).map_err(|source| CacheError::Io { path: path.clone(), source })
    }

    /// Removes the entry under `key`, if any.
    pub(crate) fn remove(&self, key: &str) -> Result<(), CacheError> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CacheError::Io { path, source }),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
