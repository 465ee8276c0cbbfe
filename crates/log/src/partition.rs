//! One partition: an ordered list of segments, the single writer that appends to the active
//! one, readers, group commit, recovery after a crash, retention and compaction.
//!
//! A segment is a data file `{base_offset:020}.log` of v2 batches stored verbatim, with a sparse
//! offset index (one entry per `index.interval.bytes`) and a time index (the largest timestamp so
//! far at each index entry) in memory. Once a rolled segment is durable its indexes and producer
//! summary are written beside it ([`crate::index`]); opening loads them for segments below the
//! recovery point instead of reading every batch header, and rebuilds them from the headers
//! when they are missing, stale or corrupt.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use runnel_records::batch::{set_base_offset, set_log_append_time, set_partition_leader_epoch};
use runnel_records::{BATCH_HEADER_BYTES, BatchHeader, Batches};
use tokio::sync::watch;

use crate::config::{TimestampType, TopicConfig};
use crate::error::{AppendError, LogError, ReadError, is_enospc};
use crate::index::{self, SegmentIndex, SegmentSummary};
use crate::producer::{Check, ProducerState};
use crate::storage::{FileCache, StorageFile, read_all, write_atomically};

const LOG_SUFFIX: &str = ".log";
const RECOVERY_POINT_FILE: &str = "recovery-point";
const LOG_START_FILE: &str = "log-start-offset";
/// Bytes read ahead when scanning batch headers.
const HEADER_READ_BYTES: usize = BATCH_HEADER_BYTES;
/// Most bytes of batches appended with [`Partition::append_buffered`] that a partition holds
/// in memory before writing them; an append that would go past this writes them, its own
/// batches included.
pub const WRITE_BUFFER_BYTES_MAX: usize = 4 << 20;

/// In-memory description of one segment file.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    /// The offset after the segment's last batch (== base_offset when empty).
    pub(crate) next_offset: i64,
    pub(crate) size: u64,
    /// (offset - base_offset, byte position) of some batch starts, ascending.
    index: Vec<(u32, u32)>,
    /// (largest timestamp up to and including the indexed batch, that batch's base offset).
    time_index: Vec<(i64, i64)>,
    pub(crate) max_timestamp: i64,
    /// Base offset of the batch holding the largest timestamp.
    max_timestamp_batch: i64,
    bytes_since_index: u64,
    /// When the segment received its first batch (for `segment.ms`).
    created_ms: Option<i64>,
    pub(crate) path: PathBuf,
    /// Each producer's last batches in this segment, for its producer summary file (emptied
    /// once the index files are written).
    producers: ProducerState,
    /// Tells this version of the segment from any later one at the same base offset (after
    /// compaction or truncation), so that index files of an old version are never installed.
    incarnation: u64,
}

/// Source of [`Segment::incarnation`].
static INCARNATIONS: AtomicU64 = AtomicU64::new(0);

impl Segment {
    fn new(dir: &Path, base_offset: i64) -> Segment {
        Segment {
            base_offset,
            next_offset: base_offset,
            size: 0,
            index: Vec::new(),
            time_index: Vec::new(),
            max_timestamp: -1,
            max_timestamp_batch: -1,
            bytes_since_index: 0,
            created_ms: None,
            path: segment_path(dir, base_offset),
            producers: ProducerState::new(),
            incarnation: INCARNATIONS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A closed segment described by index files loaded from disk.
    fn from_index(dir: &Path, loaded: SegmentIndex) -> Segment {
        let s = loaded.summary;
        let mut seg = Segment::new(dir, s.base_offset);
        seg.next_offset = s.next_offset;
        seg.size = s.data_bytes;
        seg.index = loaded.offsets;
        seg.time_index = loaded.times;
        seg.max_timestamp = s.max_timestamp;
        seg.max_timestamp_batch = s.max_timestamp_batch;
        seg
    }

    /// What the index files of this (closed) segment hold.
    fn to_index(&self) -> SegmentIndex {
        SegmentIndex {
            summary: SegmentSummary {
                base_offset: self.base_offset,
                data_bytes: self.size,
                next_offset: self.next_offset,
                max_timestamp: self.max_timestamp,
                max_timestamp_batch: self.max_timestamp_batch,
                max_producer_id: self.producers.max_producer_id(),
            },
            offsets: self.index.clone(),
            times: self.time_index.clone(),
            producers: self.producers.batches(),
        }
    }

    /// Accounts for a batch written at `position`.
    fn add_batch(&mut self, h: &BatchHeader, position: u64, index_interval_bytes: u32, now_ms: i64) {
        let ts = h.max_timestamp;
        if ts > self.max_timestamp {
            self.max_timestamp = ts;
            self.max_timestamp_batch = h.base_offset;
        }
        if self.index.is_empty() || self.bytes_since_index >= u64::from(index_interval_bytes) {
            self.index.push(((h.base_offset - self.base_offset) as u32, position as u32));
            self.time_index.push((self.max_timestamp, h.base_offset));
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size as u64;
        self.size = position + h.size as u64;
        self.next_offset = h.next_offset();
        self.created_ms.get_or_insert(now_ms);
        self.producers.record(h);
    }

    /// Byte position of an indexed batch at or before `offset`.
    fn position_for(&self, offset: i64) -> u64 {
        let rel = (offset - self.base_offset).max(0) as u32;
        let i = self.index.partition_point(|(r, _)| *r <= rel);
        if i == 0 { 0 } else { u64::from(self.index[i - 1].1) }
    }

    /// Byte position from which to scan for the first batch with max timestamp >= `ts`.
    fn position_for_timestamp(&self, ts: i64) -> u64 {
        let i = self.time_index.partition_point(|(t, _)| *t < ts);
        if i == 0 { 0 } else { self.position_for(self.time_index[i - 1].1) }
    }
}

fn segment_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}{LOG_SUFFIX}"))
}

/// Offsets assigned by an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's timestamp for `LogAppendTime` topics, else -1.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// The batch was a retry of one already in the log; nothing was appended.
    pub duplicate: bool,
}

/// Whole batches read from a partition.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// The bytes all partitions of a [`crate::Log`] hold in their write buffers, against
/// `LogConfig::write_buffers_bytes_max`.
pub(crate) struct WriteBudget {
    used: AtomicUsize,
    max: usize,
}

impl WriteBudget {
    pub(crate) fn new(max: usize) -> WriteBudget {
        WriteBudget { used: AtomicUsize::new(0), max }
    }

    /// Takes `bytes` from the budget, if that many are left.
    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.max)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// How an append reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Written before the call returns (`append`).
    Write,
    /// Buffered until the next sync (`append_buffered`).
    Buffer,
    /// Buffered if that can be done at once; otherwise nothing (`try_append_buffered`).
    TryBuffer,
}

/// Batches appended with [`Partition::append_buffered`] and not written yet: their offsets are
/// assigned and their producers recorded, and the next sync (or a write-through append, a
/// roll, a truncation, maintenance or shutdown) writes them to the active segment in one
/// write. Readers do not see them before.
#[derive(Default)]
struct Unwritten {
    bytes: Vec<u8>,
    /// Headers (offsets assigned) and append times of the batches in `bytes`, in order.
    batches: Vec<(BatchHeader, i64)>,
    /// Bytes of `bytes` taken from the store's [`WriteBudget`] (given back once written).
    budgeted: usize,
    /// The last attempt to write them failed (disk full or EIO): buffered appends are refused
    /// until a write succeeds, so that the buffer does not grow while the disk fails.
    failed: bool,
}

impl Unwritten {
    /// The offset after the last unwritten batch.
    fn next_offset(&self) -> Option<i64> {
        self.batches.last().map(|(h, _)| h.next_offset())
    }
}

struct State {
    segments: Vec<Segment>,
    unwritten: Unwritten,
    log_start_offset: i64,
    producers: ProducerState,
    /// Files of rolled segments not yet fsynced.
    unsynced_files: Vec<Arc<dyn StorageFile>>,
    unflushed_messages: i64,
    oldest_unflushed_ms: Option<i64>,
    offline: Option<String>,
    /// The recovery point last written to disk.
    checkpointed_recovery_point: i64,
    /// Base offsets of rolled segments whose index files are still to be written (once their
    /// data is durable).
    unindexed: Vec<i64>,
}

impl State {
    fn active(&self) -> &Segment {
        self.segments.last().expect("a partition always has an active segment")
    }
    /// The offset after the last written batch: what readers see (the high watermark).
    fn next_offset(&self) -> i64 {
        self.active().next_offset
    }
    /// The offset the next append gets: after the unwritten batches, if any.
    fn end_offset(&self) -> i64 {
        self.unwritten.next_offset().unwrap_or_else(|| self.next_offset())
    }
}

struct SyncState {
    /// Every offset below this is on disk.
    durable: i64,
    syncing: bool,
}

/// One partition of a topic.
pub struct Partition {
    topic: String,
    index: u32,
    dir: PathBuf,
    config: Arc<RwLock<TopicConfig>>,
    files: Arc<FileCache>,
    decompressed_bytes_max: usize,
    /// Most bytes one `read` returns (but always one whole batch).
    read_bytes_max: usize,
    write_budget: Arc<WriteBudget>,
    state: Mutex<State>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    high_watermark: watch::Sender<i64>,
    /// Compaction has cleaned every closed segment below this offset.
    cleaned_up_to: AtomicI64,
    /// Serialises writers of index files.
    index_writer: Mutex<()>,
    opened: OpenStats,
}

/// How a partition's segments were described when it opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenStats {
    /// Segments whose indexes were loaded from their index files (their data not read).
    pub segments_loaded: usize,
    /// Segments whose batch headers were read (the active one, those past the recovery
    /// point, and those whose index files were missing, stale or corrupt).
    pub segments_scanned: usize,
    /// Segments whose index files were written at open (rebuilt).
    pub indexes_written: usize,
}

fn io_append(path: &Path, e: std::io::Error) -> AppendError {
    if is_enospc(&e) {
        AppendError::StorageFull { path: path.to_path_buf() }
    } else {
        AppendError::Io { path: path.to_path_buf(), source: e }
    }
}

fn io_read(path: &Path, e: std::io::Error) -> ReadError {
    ReadError::Io { path: path.to_path_buf(), source: e }
}

/// Reads the batch header at `position`; `None` at the end of the data.
fn read_header(
    file: &dyn StorageFile,
    position: u64,
    end: u64,
) -> std::io::Result<Option<Result<BatchHeader, runnel_records::BatchError>>> {
    if position >= end {
        return Ok(None);
    }
    let mut buf = [0u8; HEADER_READ_BYTES];
    let want = ((end - position) as usize).min(HEADER_READ_BYTES);
    let n = file.read_at(&mut buf[..want], position)?;
    Ok(Some(BatchHeader::parse(&buf[..n])))
}

impl Partition {
    /// Opens (or creates) the partition in `dir`, recovering it when the last shutdown was not
    /// clean. Corruption below the recovery point opens the partition offline.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        topic: &str,
        index: u32,
        dir: PathBuf,
        config: Arc<RwLock<TopicConfig>>,
        files: Arc<FileCache>,
        decompressed_bytes_max: usize,
        read_bytes_max: usize,
        write_budget: Arc<WriteBudget>,
        clean: bool,
    ) -> Result<Partition, LogError> {
        let storage = files.storage().clone();
        let io = |e| LogError::Io { path: dir.clone(), source: e };
        storage.create_dir_all(&dir).map_err(io)?;
        let read_i64 = |name: &str| -> Option<i64> {
            let p = dir.join(name);
            if !storage.exists(&p) {
                return None;
            }
            read_all(storage.as_ref(), &p)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.trim().parse().ok())
        };
        let recovery_point = read_i64(RECOVERY_POINT_FILE).unwrap_or(0);
        let stored_log_start = read_i64(LOG_START_FILE).unwrap_or(0);
        let names = storage.list(&dir).map_err(io)?;
        for stale in names.iter().filter(|n| n.ends_with(".cleaned") || n.ends_with(index::TEMP_SUFFIX)) {
            storage.remove_file(&dir.join(stale)).map_err(io)?;
        }
        let mut bases: Vec<i64> =
            names.iter().filter_map(|n| n.strip_suffix(LOG_SUFFIX).and_then(|b| b.parse().ok())).collect();
        bases.sort_unstable();
        // Index files whose data file is gone (a crash while deleting a segment).
        let mut removed_orphans = false;
        for name in &names {
            let orphan_base = index::SUFFIXES
                .iter()
                .find_map(|sfx| name.strip_suffix(sfx))
                .and_then(|b| b.parse::<i64>().ok())
                .filter(|b| bases.binary_search(b).is_err());
            if orphan_base.is_some() {
                storage.remove_file(&dir.join(name)).map_err(io)?;
                removed_orphans = true;
            }
        }
        if removed_orphans {
            storage.sync_dir(&dir).map_err(io)?;
        }
        let index_interval = config.read().expect("config lock").index_interval_bytes;
        let mut segments: Vec<Segment> = Vec::new();
        let mut producers = ProducerState::new();
        let mut offline = None;
        let mut expected_next: Option<i64> = None;
        let mut truncated = false;
        let mut stats = OpenStats::default();
        // Positions in `segments` of the segments whose batch headers were read.
        let mut scanned = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let path = segment_path(&dir, base);
            if truncated {
                // Everything after a torn tail goes.
                files.forget(&path);
                index::remove(storage.as_ref(), &dir, base).map_err(io)?;
                storage.remove_file(&path).map_err(|e| LogError::Io { path: path.clone(), source: e })?;
                continue;
            }
            let file = files.get(&path, false).map_err(|e| LogError::Io { path: path.clone(), source: e })?;
            let len = file.len().map_err(|e| LogError::Io { path: path.clone(), source: e })?;
            let next_base = bases.get(i + 1).copied();
            // A segment wholly below the recovery point was durable when the recovery point was
            // written, and its index files (written once it was durable) describe it, if they
            // are there and check out.
            if let Some(next_base) = next_base.filter(|n| *n <= recovery_point) {
                let expected = expected_next.unwrap_or(base).max(base);
                match index::load(storage.as_ref(), &dir, base, len) {
                    Ok(loaded)
                        if loaded.summary.next_offset <= next_base
                            && loaded.offsets.first().is_none_or(|(rel, _)| base + i64::from(*rel) >= expected) =>
                    {
                        for b in &loaded.producers {
                            producers.record_batch(b);
                        }
                        producers.note_producer_id(loaded.summary.max_producer_id);
                        expected_next = Some(loaded.summary.next_offset);
                        segments.push(Segment::from_index(&dir, loaded));
                        stats.segments_loaded += 1;
                        continue;
                    }
                    Ok(_) => {
                        tracing::warn!(topic, partition = index, path = %path.display(), "index files disagree with the segments around them; rebuilding them");
                    }
                    Err(detail) => {
                        tracing::debug!(topic, partition = index, path = %path.display(), %detail, "index files not usable; rebuilding them");
                    }
                }
            }
            stats.segments_scanned += 1;
            let mut seg = Segment::new(&dir, base);
            // Validate CRCs where the data may postdate the last fsync we know of.
            let validate = !clean || next_base.is_none_or(|n| n > recovery_point);
            let mut pos = 0u64;
            let mut buf = Vec::new();
            loop {
                let header =
                    read_header(file.as_ref(), pos, len).map_err(|e| LogError::Io { path: path.clone(), source: e })?;
                let Some(header) = header else { break };
                let expected = expected_next.unwrap_or(base).max(base);
                let problem = match &header {
                    Err(e) => Some(e.to_string()),
                    Ok(h) if pos + h.size as u64 > len => {
                        Some(format!("batch of {} bytes runs past the end of the file", h.size))
                    }
                    Ok(h) if h.base_offset < expected => {
                        Some(format!("batch offset {} goes backwards (expected {expected} or more)", h.base_offset))
                    }
                    Ok(h) if validate => {
                        buf.resize(h.size, 0);
                        file.read_at(&mut buf, pos).map_err(|e| LogError::Io { path: path.clone(), source: e })?;
                        BatchHeader::validate(&buf).err().map(|e| e.to_string())
                    }
                    Ok(_) => None,
                };
                if let Some(detail) = problem {
                    if expected < recovery_point {
                        tracing::error!(topic, partition = index, path = %path.display(), position = pos, %detail, "corrupt log below the recovery point; partition offline");
                        offline = Some(format!("corrupt log at {} byte {pos}: {detail}", path.display()));
                    } else {
                        tracing::warn!(topic, partition = index, path = %path.display(), position = pos, %detail, "truncating torn tail after unclean shutdown");
                        file.truncate(pos).map_err(|e| LogError::Io { path: path.clone(), source: e })?;
                        file.sync().map_err(|e| LogError::Io { path: path.clone(), source: e })?;
                        truncated = true;
                    }
                    break;
                }
                let h = header.clone().expect("checked above");
                producers.record(&h);
                seg.add_batch(&h, pos, index_interval, 0);
                expected_next = Some(h.next_offset());
                pos += h.size as u64;
            }
            seg.size = pos;
            seg.created_ms = None;
            if seg.next_offset < expected_next.unwrap_or(base) {
                seg.next_offset = expected_next.unwrap_or(base);
            }
            scanned.push(segments.len());
            segments.push(seg);
            if offline.is_some() {
                break;
            }
        }
        if truncated {
            storage.sync_dir(&dir).map_err(io)?;
        }
        // Drop empty trailing segments except one, so the active segment is the last. Only those
        // past the recovery point, though: below it, an empty segment's base offset is the end of
        // the log after compaction emptied the segments before it, and dropping it would hand out
        // acknowledged offsets again. An offline partition loses no file at all.
        while offline.is_none()
            && segments.len() > 1
            && segments.last().is_some_and(|s| s.size == 0 && s.base_offset > recovery_point)
        {
            let s = segments.pop().expect("non-empty");
            files.forget(&s.path);
            index::remove(storage.as_ref(), &dir, s.base_offset).map_err(io)?;
            storage.remove_file(&s.path).map_err(io)?;
        }
        if segments.is_empty() {
            let base = stored_log_start.max(0);
            let seg = Segment::new(&dir, base);
            files.get(&seg.path, true).map_err(|e| LogError::Io { path: seg.path.clone(), source: e })?;
            storage.sync_dir(&dir).map_err(io)?;
            segments.push(seg);
        }
        let log_start_offset =
            stored_log_start.max(segments[0].base_offset).min(segments.last().expect("one").next_offset);
        let next = segments.last().expect("one").next_offset;
        if offline.is_none() && stored_log_start > log_start_offset {
            // A DeleteRecords past data a crash then lost: new records will take those offsets.
            write_atomically(storage.as_ref(), &dir.join(LOG_START_FILE), log_start_offset.to_string().as_bytes())
                .map_err(io)?;
        }
        // Past the recovery point, what the files hold may never have been fsynced (the process
        // stopped, not the machine; or an fsync failed before a shutdown). Closed segments are
        // fsynced now, the active one by the next sync_to: until then it is not durable.
        if offline.is_none() {
            for seg in segments[..segments.len() - 1].iter().filter(|s| s.next_offset > recovery_point) {
                let file =
                    files.get(&seg.path, false).map_err(|e| LogError::Io { path: seg.path.clone(), source: e })?;
                file.sync().map_err(|e| LogError::Io { path: seg.path.clone(), source: e })?;
            }
        }
        if offline.is_none() {
            // The active segment will change: index files it had when it was closed (before a
            // truncation or before the empty segments after it were dropped) are stale.
            let active = segments.last().expect("one").base_offset;
            let mut dir_changed = index::remove(storage.as_ref(), &dir, active).map_err(io)?;
            // Every closed segment is durable now: write the index files of those scanned,
            // unless files that check out are already there (a segment past the recovery
            // point that was indexed before the stop).
            let mut temps = Vec::new();
            let closed = segments.len() - 1;
            for &i in scanned.iter().filter(|&&i| i < closed) {
                let seg = &mut segments[i];
                let built = seg.to_index();
                if index::load(storage.as_ref(), &dir, seg.base_offset, seg.size).is_ok_and(|l| l == built) {
                    continue;
                }
                match index::prepare(storage.as_ref(), &dir, &built) {
                    Ok(()) => temps.push(seg.base_offset),
                    Err(e) => {
                        index::discard(storage.as_ref(), &dir, seg.base_offset);
                        tracing::warn!(topic, partition = index, path = %seg.path.display(), error = %e, "could not write index files; they will be rebuilt at the next open")
                    }
                }
                seg.producers = ProducerState::new();
            }
            for &base in &temps {
                index::install(storage.as_ref(), &dir, base).map_err(io)?;
                stats.indexes_written += 1;
                dir_changed = true;
            }
            if dir_changed {
                storage.sync_dir(&dir).map_err(io)?;
            }
        }
        let (hw, _) = watch::channel(next);
        Ok(Partition {
            topic: topic.to_string(),
            index,
            dir,
            config,
            files,
            decompressed_bytes_max,
            read_bytes_max,
            write_budget,
            state: Mutex::new(State {
                segments,
                unwritten: Unwritten::default(),
                log_start_offset,
                producers,
                unsynced_files: Vec::new(),
                unflushed_messages: 0,
                oldest_unflushed_ms: None,
                offline,
                checkpointed_recovery_point: recovery_point.min(next),
                unindexed: Vec::new(),
            }),
            sync: Mutex::new(SyncState { durable: recovery_point.min(next), syncing: false }),
            synced: Condvar::new(),
            high_watermark: hw,
            cleaned_up_to: AtomicI64::new(-1),
            index_writer: Mutex::new(()),
            opened: stats,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("partition state lock")
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    /// Why the partition is offline, if it is.
    pub fn offline_reason(&self) -> Option<String> {
        self.lock().offline.clone()
    }

    /// Appends one or more v2 batches exactly as received, and writes them (with any batches
    /// buffered before them) before returning: readers see them, and they survive the
    /// process (not the machine) stopping. See the crate docs for durability.
    pub fn append(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, AppendError> {
        self.append_with(batches, now_ms, Mode::Write).map(|done| done.expect("a write-through append always runs"))
    }

    /// Appends like [`Partition::append`], but may keep the batches in memory until the next
    /// `sync_to` writes everything buffered in one write (or a write-through append, a roll,
    /// truncation, maintenance or shutdown does): readers see them only then, and a crash
    /// before loses them. For callers that wait for `sync_to` before acknowledging, as
    /// acks=all producers do: many small batches per fsync cost one write instead of one
    /// each. While writing fails (disk full, EIO) these appends fail too, with that error,
    /// and the batches already buffered wait for the next write.
    pub fn append_buffered(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, AppendError> {
        self.append_with(batches, now_ms, Mode::Buffer).map(|done| done.expect("a buffered append always runs"))
    }

    /// [`Partition::append_buffered`] if it can be done at once, without waiting for the
    /// partition's lock and without touching the disk (no write, roll or fsync due); else
    /// `Ok(None)`, with nothing appended. For async callers, which then fall back to
    /// `append_buffered` on a blocking thread.
    pub fn try_append_buffered(&self, batches: &[u8], now_ms: i64) -> Result<Option<AppendInfo>, AppendError> {
        self.append_with(batches, now_ms, Mode::TryBuffer)
    }

    /// `Ok(None)` only in [`Mode::TryBuffer`], when nothing was done.
    fn append_with(&self, batches: &[u8], now_ms: i64, mode: Mode) -> Result<Option<AppendInfo>, AppendError> {
        let buffered = mode != Mode::Write;
        // The settings read here, copied out (a clone of the whole config allocates).
        let (max_message_bytes, flush_messages, segment_bytes, segment_ms, log_append_time) = {
            let c = self.config.read().expect("config lock");
            let log_append_time = c.message_timestamp_type == TimestampType::LogAppendTime;
            (c.max_message_bytes, c.flush_messages, c.segment_bytes, c.segment_ms, log_append_time)
        };
        let mut headers = Vec::new();
        let mut iter = Batches::new(batches);
        for b in iter.by_ref() {
            let (h, _) = b?;
            if h.size > max_message_bytes as usize {
                return Err(AppendError::MessageTooLarge { size: h.size, max: max_message_bytes });
            }
            headers.push(h);
        }
        if headers.is_empty() {
            return Err(AppendError::InvalidBatch(runnel_records::BatchError::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: batches.len(),
            }));
        }
        let mut st = match mode {
            Mode::TryBuffer => match self.state.try_lock() {
                Ok(st) => st,
                Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
                Err(std::sync::TryLockError::Poisoned(_)) => panic!("partition state lock poisoned"),
            },
            _ => self.lock(),
        };
        if let Some(reason) = &st.offline {
            return Err(AppendError::Offline(reason.clone()));
        }
        for h in &headers {
            if let Check::Duplicate { base_offset, last_offset } = st.producers.check(h)? {
                if headers.len() == 1 {
                    // The original may still be buffered: a write-through append's answer
                    // means written.
                    if !buffered {
                        self.write_unwritten(&mut st)?;
                    }
                    return Ok(Some(AppendInfo {
                        base_offset,
                        last_offset,
                        log_append_time: -1,
                        log_start_offset: st.log_start_offset,
                        duplicate: true,
                    }));
                }
                return Err(AppendError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    expected: -1,
                    got: h.base_sequence,
                });
            }
        }
        let records: i64 = headers.iter().map(|h| i64::from(h.record_count)).sum();
        if mode == Mode::TryBuffer
            && (st.unwritten.failed || st.unflushed_messages.saturating_add(records) >= flush_messages)
        {
            // A write or an fsync would be due (a roll or a full buffer are seen below).
            return Ok(None);
        }
        if buffered && st.unwritten.failed {
            // Refused until the disk takes the batches already buffered.
            self.write_unwritten(&mut st)?;
        }
        let base_offset = st.end_offset();
        let pending = st.unwritten.bytes.len() as u64;
        let active = st.active();
        let created_ms = active.created_ms.or(st.unwritten.batches.first().map(|(_, t)| *t));
        let must_roll = active.size + pending > 0
            && (active.size + pending + batches.len() as u64 > segment_bytes
                || created_ms.is_some_and(|c| now_ms.saturating_sub(c) >= segment_ms));
        if must_roll {
            if mode == Mode::TryBuffer {
                return Ok(None);
            }
            self.roll(&mut st)?;
        }
        // This append's batches go after those buffered, with their offsets set in place.
        let direct = !buffered
            || st.unwritten.bytes.len() + batches.len() > WRITE_BUFFER_BYTES_MAX
            || !self.write_budget.try_take(batches.len());
        if direct && mode == Mode::TryBuffer {
            return Ok(None);
        }
        let mark = (st.unwritten.bytes.len(), st.unwritten.batches.len());
        let mut next = base_offset;
        {
            let unwritten = &mut st.unwritten;
            unwritten.bytes.extend_from_slice(batches);
            let mut pos = mark.0;
            for h in headers.iter_mut() {
                let batch = &mut unwritten.bytes[pos..pos + h.size];
                set_base_offset(batch, next);
                set_partition_leader_epoch(batch, 0);
                if log_append_time {
                    set_log_append_time(batch, h.size, now_ms);
                    h.max_timestamp = now_ms;
                    h.attributes |= 1 << 3;
                }
                h.base_offset = next;
                next = h.next_offset();
                pos += h.size;
                unwritten.batches.push((*h, now_ms));
            }
        }
        if !direct {
            st.unwritten.budgeted += batches.len();
        }
        if direct && let Err(e) = self.write_unwritten(&mut st) {
            // This append's batches are not appended; those buffered before wait for the next
            // write.
            st.unwritten.bytes.truncate(mark.0);
            st.unwritten.batches.truncate(mark.1);
            return Err(e);
        }
        for h in &headers {
            st.producers.record(h);
        }
        st.unflushed_messages += records;
        st.oldest_unflushed_ms.get_or_insert(now_ms);
        let flush_now = st.unflushed_messages >= flush_messages;
        let info = AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time: if log_append_time { now_ms } else { -1 },
            log_start_offset: st.log_start_offset,
            duplicate: false,
        };
        drop(st);
        if flush_now {
            self.sync_to(next)?;
        }
        Ok(Some(info))
    }

    /// Writes the unwritten batches to the active segment in one write, and shows them to
    /// readers. On failure they stay buffered, for the next attempt.
    fn write_unwritten(&self, st: &mut State) -> Result<(), AppendError> {
        if st.unwritten.batches.is_empty() {
            st.unwritten.failed = false;
            return Ok(());
        }
        let active = st.active();
        let (path, position) = (active.path.clone(), active.size);
        let file = self.files.get(&path, true).map_err(|e| io_append(&path, e))?;
        if let Err(e) = file.write_at(&st.unwritten.bytes, position) {
            st.unwritten.failed = true;
            // A short write (ENOSPC part-way) leaves part of a batch past the data; it goes, or
            // a roll would close the segment with it. If this fails too, `roll` tries again.
            let _ = file.truncate(position);
            return Err(io_append(&path, e));
        }
        // Taken, not cleared: a buffer of a partition that went quiet is not kept.
        let unwritten = std::mem::take(&mut st.unwritten);
        self.write_budget.give_back(unwritten.budgeted);
        let active = st.segments.last_mut().expect("active");
        let index_interval_bytes = self.config.read().expect("config lock").index_interval_bytes;
        let mut p = position;
        for (h, appended_ms) in &unwritten.batches {
            active.add_batch(h, p, index_interval_bytes, *appended_ms);
            p += h.size as u64;
        }
        // Under the lock, so that the high watermark never goes back.
        self.high_watermark.send_replace(active.next_offset);
        Ok(())
    }

    /// Starts a new active segment after writing the unwritten batches to the old one; the old
    /// one is fsynced by the next sync.
    fn roll(&self, st: &mut State) -> Result<(), AppendError> {
        self.write_unwritten(st)?;
        let base_offset = st.next_offset();
        let old = st.active().path.clone();
        let old_file = self.files.get(&old, false).map_err(|e| io_append(&old, e))?;
        // A closed segment is exactly its batches: bytes past them (a failed write's) would
        // read as corruption below the recovery point at the next open.
        let size = st.active().size;
        if old_file.len().map_err(|e| io_append(&old, e))? > size {
            old_file.truncate(size).map_err(|e| io_append(&old, e))?;
        }
        st.unsynced_files.push(old_file);
        let old_base = st.active().base_offset;
        if !st.unindexed.contains(&old_base) {
            st.unindexed.push(old_base);
        }
        let seg = Segment::new(&self.dir, base_offset);
        self.files.get(&seg.path, true).map_err(|e| io_append(&seg.path, e))?;
        self.files.storage().sync_dir(&self.dir).map_err(|e| io_append(&self.dir, e))?;
        st.segments.push(seg);
        Ok(())
    }

    /// Forces a roll of a non-empty active segment (tests and `segment.ms`).
    pub fn roll_now(&self) -> Result<(), AppendError> {
        let mut st = self.lock();
        if st.active().size == 0 && st.unwritten.batches.is_empty() {
            return Ok(());
        }
        self.roll(&mut st)
    }

    /// Blocks until every record below `offset` is on disk. Concurrent callers share fsyncs:
    /// one writes whatever is buffered and syncs while the others wait, and a single fsync
    /// covers every append before it.
    pub fn sync_to(&self, offset: i64) -> Result<(), AppendError> {
        // Nothing beyond the end can become durable; waiting for it would never end.
        let offset = offset.min(self.lock().end_offset());
        let mut s = self.sync.lock().expect("sync lock");
        let mut led = false;
        loop {
            if let Some(reason) = self.lock().offline.clone() {
                return Err(AppendError::Offline(reason));
            }
            if s.durable >= offset {
                drop(s);
                // Rolled segments this caller's fsync made durable get their index files,
                // after the followers were woken.
                if led && !self.lock().unindexed.is_empty() {
                    self.persist_indexes();
                }
                return Ok(());
            }
            if s.syncing {
                s = self.synced.wait(s).expect("sync lock");
                continue;
            }
            s.syncing = true;
            led = true;
            drop(s);
            let result = self.sync_once();
            s = self.sync.lock().expect("sync lock");
            s.syncing = false;
            self.synced.notify_all();
            match result {
                Ok((target, write_error)) => {
                    s.durable = s.durable.max(target);
                    // The buffered batches could not be written: those who wait for them get
                    // the error (the next sync tries again); those below are durable.
                    if let Some(e) = write_error
                        && s.durable < offset
                    {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the unwritten batches, then one fsync of everything written so far; returns the
    /// offset it made durable, and the error of the write if it failed (the batches stay
    /// buffered and the partition online; what was written before is still fsynced). A
    /// failed fsync takes the partition offline.
    fn sync_once(&self) -> Result<(i64, Option<AppendError>), AppendError> {
        let sync_started_ms = crate::now_ms();
        let (target, mut files, active, write_error, flushed) = {
            let mut st = self.lock();
            let write_error = self.write_unwritten(&mut st).err();
            let files = std::mem::take(&mut st.unsynced_files);
            let flushed = (st.unflushed_messages, st.oldest_unflushed_ms.is_some());
            (st.next_offset(), files, st.active().path.clone(), write_error, flushed)
        };
        let active_file = self.files.get(&active, true).map_err(|e| io_append(&active, e))?;
        files.push(active_file);
        for f in &files {
            let started = std::time::Instant::now();
            let synced = f.sync();
            if synced.is_ok() {
                crate::stats::record_fsync(started.elapsed());
            } else {
                crate::stats::record_fsync_failure();
            }
            if let Err(e) = synced {
                // A failed fsync may have dropped dirty pages: nothing written since the last
                // good fsync can be trusted, so the partition stops until a restart recovers it.
                let reason =
                    format!("fsync of {} failed: {e}; restart runnel to recover the partition", active.display());
                tracing::error!(topic = %self.topic, partition = self.index, %reason, "partition offline");
                self.lock().offline = Some(reason.clone());
                return Err(AppendError::Offline(reason));
            }
        }
        // Appends made during the fsync are not covered: they stay counted for flush.messages,
        // and flush.ms counts them from this sync's start at the latest.
        let mut st = self.lock();
        let (messages, had_oldest) = flushed;
        st.unflushed_messages = (st.unflushed_messages - messages).max(0);
        if st.unflushed_messages == 0 {
            st.oldest_unflushed_ms = None;
        } else if had_oldest {
            st.oldest_unflushed_ms = Some(sync_started_ms);
        }
        Ok((target, write_error))
    }

    /// Writes the index files of rolled segments whose data is durable. They are an
    /// optimisation: a failure is logged and the next open rebuilds them.
    fn persist_indexes(&self) {
        let _writer = self.index_writer.lock().expect("index writer lock");
        let durable = self.durable_offset();
        let jobs: Vec<(SegmentIndex, u64)> = {
            let mut st = self.lock();
            if st.offline.is_some() {
                return;
            }
            let closed = st.segments.len() - 1;
            let mut jobs = Vec::new();
            for base in std::mem::take(&mut st.unindexed) {
                match st.segments[..closed].iter().find(|s| s.base_offset == base) {
                    // Deleted, or active again after a truncation.
                    None => {}
                    Some(seg) if seg.next_offset <= durable => jobs.push((seg.to_index(), seg.incarnation)),
                    Some(_) => st.unindexed.push(base),
                }
            }
            jobs
        };
        let storage = self.files.storage().clone();
        let mut installed = false;
        for (built, incarnation) in jobs {
            let base = built.summary.base_offset;
            if let Err(e) = index::prepare(storage.as_ref(), &self.dir, &built) {
                index::discard(storage.as_ref(), &self.dir, base);
                tracing::warn!(topic = %self.topic, partition = self.index, base, error = %e, "could not write index files; they will be rebuilt at the next open");
                continue;
            }
            // Installed under the lock, and only over the same version of the segment: a
            // compaction or truncation meanwhile made these files stale.
            let mut st = self.lock();
            let closed = st.segments.len() - 1;
            let current =
                st.segments[..closed].iter_mut().find(|s| s.base_offset == base && s.incarnation == incarnation);
            let done = match current {
                Some(seg) => match index::install(storage.as_ref(), &self.dir, base) {
                    Ok(()) => {
                        seg.producers = ProducerState::new();
                        true
                    }
                    Err(e) => {
                        tracing::warn!(topic = %self.topic, partition = self.index, base, error = %e, "could not install index files; they will be rebuilt at the next open");
                        false
                    }
                },
                None => false,
            };
            drop(st);
            if !done {
                index::discard(storage.as_ref(), &self.dir, base);
            }
            installed |= done;
        }
        if installed && let Err(e) = storage.sync_dir(&self.dir) {
            tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "could not fsync the directory of new index files");
        }
    }

    /// How the segments were described when the partition opened.
    pub fn open_stats(&self) -> OpenStats {
        self.opened
    }

    /// Every offset below this is known to be on disk.
    pub fn durable_offset(&self) -> i64 {
        self.sync.lock().expect("sync lock").durable
    }

    /// Reads whole batches starting with the one that contains `offset`, up to `max_bytes`
    /// (but always at least one whole batch when one is available).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, ReadError> {
        let mut target = offset;
        // Bounded by the number of segments: each turn moves to a later segment.
        loop {
            // The handle is taken under the lock: compaction may replace the file right after,
            // and the positions are those of the file as it is now.
            let (file, path, start, end, hw, log_start, next_segment_base) = {
                let st = self.lock();
                if let Some(reason) = &st.offline {
                    return Err(ReadError::Offline(reason.clone()));
                }
                let hw = st.next_offset();
                if offset < st.log_start_offset || offset > hw {
                    return Err(ReadError::OffsetOutOfRange {
                        offset,
                        log_start_offset: st.log_start_offset,
                        high_watermark: hw,
                    });
                }
                if target >= hw {
                    return Ok(ReadResult {
                        records: Bytes::new(),
                        high_watermark: hw,
                        log_start_offset: st.log_start_offset,
                    });
                }
                let i = st.segments.partition_point(|s| s.base_offset <= target).saturating_sub(1);
                let seg = &st.segments[i];
                let next_base = st.segments.get(i + 1).map(|s| s.base_offset);
                let file = self.files.get(&seg.path, false).map_err(|e| io_read(&seg.path, e))?;
                (file, seg.path.clone(), seg.position_for(target), seg.size, hw, st.log_start_offset, next_base)
            };
            let mut pos = start;
            let mut found = None;
            while let Some(h) = read_header(file.as_ref(), pos, end).map_err(|e| io_read(&path, e))? {
                let h =
                    h.map_err(|e| ReadError::Corrupt { path: path.clone(), position: pos, detail: e.to_string() })?;
                if h.last_offset() >= target {
                    found = Some(h);
                    break;
                }
                pos += h.size as u64;
            }
            let Some(first) = found else {
                match next_segment_base {
                    Some(b) => {
                        target = target.max(b);
                        continue;
                    }
                    None => {
                        return Ok(ReadResult {
                            records: Bytes::new(),
                            high_watermark: hw,
                            log_start_offset: log_start,
                        });
                    }
                }
            };
            let budget = max_bytes.min(self.read_bytes_max);
            let want = (budget as u64).max(first.size as u64).min(end - pos) as usize;
            let mut buf = vec![0u8; want];
            let n = file.read_at(&mut buf, pos).map_err(|e| io_read(&path, e))?;
            buf.truncate(n);
            let mut keep = 0;
            for b in Batches::new(&buf) {
                match b {
                    Ok((h, _)) => keep += h.size,
                    Err(runnel_records::BatchError::Truncated { .. }) => break,
                    Err(e) => {
                        return Err(ReadError::Corrupt {
                            path: path.clone(),
                            position: pos + keep as u64,
                            detail: e.to_string(),
                        });
                    }
                }
            }
            buf.truncate(keep);
            return Ok(ReadResult { records: Bytes::from(buf), high_watermark: hw, log_start_offset: log_start });
        }
    }

    /// The offset after the last record (one node: also the high watermark).
    pub fn high_watermark(&self) -> i64 {
        self.lock().next_offset()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start_offset
    }

    /// Wakes whenever the high watermark moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.iter().map(|s| s.size).sum()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// The largest producer id seen in this partition, or -1.
    pub fn producer_ids_max(&self) -> i64 {
        self.lock().producers.max_producer_id()
    }

    /// (offset, timestamp) of the first record whose timestamp is at least `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, ReadError> {
        // Every segment that may hold the answer, in order: the first one with a late enough
        // timestamp may hold it only below the log start.
        let mut scanned_base = i64::MIN;
        loop {
            let (file, path, start, end, log_start) = {
                let st = self.lock();
                if let Some(reason) = &st.offline {
                    return Err(ReadError::Offline(reason.clone()));
                }
                let Some(seg) = st.segments.iter().find(|s| {
                    s.base_offset > scanned_base && s.max_timestamp >= ts && s.next_offset > st.log_start_offset
                }) else {
                    return Ok(None);
                };
                scanned_base = seg.base_offset;
                // Under the lock, as in `read`: the positions are those of this file.
                let file = self.files.get(&seg.path, false).map_err(|e| io_read(&seg.path, e))?;
                (file, seg.path.clone(), seg.position_for_timestamp(ts), seg.size, st.log_start_offset)
            };
            let mut pos = start;
            while let Some(h) = read_header(file.as_ref(), pos, end).map_err(|e| io_read(&path, e))? {
                let h =
                    h.map_err(|e| ReadError::Corrupt { path: path.clone(), position: pos, detail: e.to_string() })?;
                if h.max_timestamp >= ts && h.last_offset() >= log_start {
                    let mut buf = vec![0u8; h.size];
                    file.read_at(&mut buf, pos).map_err(|e| io_read(&path, e))?;
                    let records = runnel_records::decode_records(&buf, self.decompressed_bytes_max)
                        .map_err(|e| ReadError::Corrupt { path: path.clone(), position: pos, detail: e.to_string() })?;
                    if let Some(r) = records.iter().find(|r| r.timestamp >= ts && r.offset >= log_start) {
                        return Ok(Some((r.offset, r.timestamp)));
                    }
                }
                pos += h.size as u64;
            }
        }
    }

    /// (offset, timestamp) of the first record with the largest timestamp.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        // Only the first segment may hold records below the log start, and its largest
        // timestamp may be one of them.
        let (log_start, first, rest) = {
            let st = self.lock();
            let rest = st.segments[1..]
                .iter()
                .filter(|s| s.max_timestamp >= 0)
                .max_by_key(|s| (s.max_timestamp, -s.base_offset))
                .map(|s| (s.max_timestamp, s.max_timestamp_batch));
            let f = &st.segments[0];
            let first = (f.max_timestamp >= 0).then(|| {
                let file = self.files.get(&f.path, false).ok();
                (f.max_timestamp, f.max_timestamp_batch, file, f.position_for(st.log_start_offset), f.size)
            });
            (st.log_start_offset, first, rest)
        };
        let from_first = match first {
            Some((ts, ..)) if rest.is_some_and(|(r, _)| r > ts) => None,
            Some((ts, batch, ..)) if batch >= log_start => Some((ts, self.first_record_at(batch, ts)?)),
            Some((_, _, file, start, end)) => self.largest_timestamp_from(file?.as_ref(), start, end, log_start),
            None => None,
        };
        let from_rest = match (from_first, rest) {
            (Some((f, _)), Some((r, _))) if f >= r => None,
            (_, Some((ts, batch))) => Some((ts, self.first_record_at(batch, ts)?)),
            _ => None,
        };
        from_first.into_iter().chain(from_rest).max_by_key(|(ts, o)| (*ts, -o)).map(|(ts, o)| (o, ts))
    }

    /// The offset of the first record with timestamp `ts` in the batch at `batch`.
    fn first_record_at(&self, batch: i64, ts: i64) -> Option<i64> {
        let read = self.read(batch, 1).ok()?;
        let records = runnel_records::decode_records(&read.records, self.decompressed_bytes_max).ok()?;
        records.iter().find(|r| r.timestamp == ts).map(|r| r.offset)
    }

    /// (timestamp, offset) of the first record with the largest timestamp at or above
    /// `log_start` in a segment `file`, scanning from byte `start` to `end`.
    fn largest_timestamp_from(
        &self,
        file: &dyn StorageFile,
        start: u64,
        end: u64,
        log_start: i64,
    ) -> Option<(i64, i64)> {
        let mut best: Option<(i64, i64)> = None;
        let mut pos = start;
        while let Some(h) = read_header(file, pos, end).ok()? {
            let h = h.ok()?;
            if h.last_offset() >= log_start && best.is_none_or(|(ts, _)| h.max_timestamp > ts) {
                let mut buf = vec![0u8; h.size];
                file.read_at(&mut buf, pos).ok()?;
                for r in runnel_records::decode_records(&buf, self.decompressed_bytes_max).ok()? {
                    if r.offset >= log_start && best.is_none_or(|(ts, _)| r.timestamp > ts) {
                        best = Some((r.timestamp, r.offset));
                    }
                }
            }
            pos += h.size as u64;
        }
        best
    }

    /// Moves the log start offset up to `offset` (DeleteRecords), deleting segments wholly below it.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, AppendError> {
        let mut st = self.lock();
        let hw = st.next_offset();
        if offset > hw || offset < 0 {
            return Err(AppendError::Offline(format!("offset {offset} is out of range 0..={hw}")));
        }
        if offset <= st.log_start_offset {
            return Ok(st.log_start_offset);
        }
        st.log_start_offset = offset;
        let storage = self.files.storage().clone();
        write_atomically(storage.as_ref(), &self.dir.join(LOG_START_FILE), offset.to_string().as_bytes())
            .map_err(|e| io_append(&self.dir, e))?;
        self.delete_segments_below(&mut st, offset)?;
        // Deleting a segment moves the log start to the next one's base offset, which may be
        // beyond `offset` where compaction left a gap.
        Ok(st.log_start_offset)
    }

    /// Removes non-active segments whose every offset is below `offset`.
    fn delete_segments_below(&self, st: &mut State, offset: i64) -> Result<usize, AppendError> {
        let mut removed = 0;
        while st.segments.len() > 1 && st.segments[0].next_offset <= offset {
            let seg = st.segments.remove(0);
            self.files.forget(&seg.path);
            // Index files first: a crash in between leaves a data file without them (rebuilt),
            // never index files without a data file.
            index::remove(self.files.storage().as_ref(), &self.dir, seg.base_offset)
                .map_err(|e| io_append(&self.dir, e))?;
            self.files.storage().remove_file(&seg.path).map_err(|e| io_append(&seg.path, e))?;
            removed += 1;
        }
        if removed > 0 {
            st.log_start_offset = st.log_start_offset.max(st.segments[0].base_offset);
            self.files.storage().sync_dir(&self.dir).map_err(|e| io_append(&self.dir, e))?;
        }
        Ok(removed)
    }

    /// Removes every record at or after `offset`.
    pub fn truncate_to(&self, offset: i64) -> Result<(), AppendError> {
        {
            let mut st = self.lock();
            if st.offline.is_none() {
                self.write_unwritten(&mut st)?;
            }
        }
        // Rolled segments may hold writes not yet fsynced. They are made durable first: the
        // fsync of the truncated segment below must not make later data durable before earlier
        // data (a crash would then leave a hole in the log).
        if offset < self.high_watermark() && self.lock().offline.is_none() {
            self.sync_to(offset)?;
        }
        let mut st = self.lock();
        // Appends buffered since the first write come before the cut too.
        self.write_unwritten(&mut st)?;
        if offset >= st.next_offset() {
            return Ok(());
        }
        let storage = self.files.storage().clone();
        while st.segments.len() > 1 && st.active().base_offset >= offset {
            let seg = st.segments.pop().expect("more than one");
            self.files.forget(&seg.path);
            index::remove(storage.as_ref(), &self.dir, seg.base_offset).map_err(|e| io_append(&self.dir, e))?;
            storage.remove_file(&seg.path).map_err(|e| io_append(&seg.path, e))?;
        }
        // The segment cut is the active one now (it may have been rolled and indexed).
        let cut = st.active().base_offset;
        index::remove(storage.as_ref(), &self.dir, cut).map_err(|e| io_append(&self.dir, e))?;
        let interval = self.config.read().expect("config lock").index_interval_bytes;
        let seg = st.segments.last().expect("active").clone();
        let file = self.files.get(&seg.path, false).map_err(|e| io_append(&seg.path, e))?;
        let mut rebuilt = Segment::new(&self.dir, seg.base_offset);
        let mut pos = 0;
        while let Some(h) = read_header(file.as_ref(), pos, seg.size).map_err(|e| io_append(&seg.path, e))? {
            let h = h?;
            // The batch holding `offset` goes too: nothing at or after `offset` may remain.
            if h.last_offset() >= offset {
                break;
            }
            rebuilt.add_batch(&h, pos, interval, seg.created_ms.unwrap_or(0));
            pos += h.size as u64;
        }
        rebuilt.size = pos;
        file.truncate(pos).map_err(|e| io_append(&seg.path, e))?;
        file.sync().map_err(|e| io_append(&seg.path, e))?;
        storage.sync_dir(&self.dir).map_err(|e| io_append(&self.dir, e))?;
        let next = rebuilt.next_offset;
        *st.segments.last_mut().expect("active") = rebuilt;
        if st.log_start_offset > next {
            // Persisted, or a restart would hide the records appended from `next` on.
            write_atomically(storage.as_ref(), &self.dir.join(LOG_START_FILE), next.to_string().as_bytes())
                .map_err(|e| io_append(&self.dir, e))?;
            st.log_start_offset = next;
        }
        // Forget the producer batches that are gone, so that their retries are appended again.
        let mut producers = ProducerState::new();
        for seg in &st.segments {
            let file = self.files.get(&seg.path, false).map_err(|e| io_append(&seg.path, e))?;
            let mut pos = 0;
            while let Some(h) = read_header(file.as_ref(), pos, seg.size).map_err(|e| io_append(&seg.path, e))? {
                let h = h?;
                producers.record(&h);
                pos += h.size as u64;
            }
        }
        st.producers = producers;
        // New data at the truncated offsets is not durable: a torn tail there after a crash
        // must be truncated, not mistaken for corruption below the recovery point.
        if st.checkpointed_recovery_point > next {
            write_atomically(storage.as_ref(), &self.dir.join(RECOVERY_POINT_FILE), next.to_string().as_bytes())
                .map_err(|e| io_append(&self.dir, e))?;
            st.checkpointed_recovery_point = next;
        }
        drop(st);
        let mut s = self.sync.lock().expect("sync lock");
        s.durable = s.durable.min(next);
        drop(s);
        self.high_watermark.send_replace(next);
        Ok(())
    }

    /// Retention, time-based roll, `flush.ms`, compaction and the recovery-point checkpoint.
    pub(crate) fn maintain(&self, now_ms: i64) -> Result<(), AppendError> {
        let config = self.config.read().expect("config lock").clone();
        let flush_due = {
            let mut st = self.lock();
            if st.offline.is_some() {
                return Ok(());
            }
            // Batches buffered by appends that nobody synced are written at the latest now. A
            // failure here (a full disk) must not stop retention, which may free the space.
            if let Err(e) = self.write_unwritten(&mut st) {
                tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "could not write buffered batches; the next sync tries again");
            }
            st.oldest_unflushed_ms.is_some_and(|t| now_ms.saturating_sub(t) >= config.flush_ms)
        };
        if flush_due {
            let next = self.high_watermark();
            match self.sync_to(next) {
                Err(e @ AppendError::Offline(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "flush.ms sync failed; retrying at the next maintenance")
                }
                Ok(()) => {}
            }
        }
        {
            let mut st = self.lock();
            let active = st.active();
            if active.size > 0
                && active.created_ms.is_some_and(|c| now_ms.saturating_sub(c) >= config.segment_ms)
                && let Err(e) = self.roll(&mut st)
            {
                // Retention below still runs: on a full disk it may free the space.
                tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "segment.ms roll failed; retrying at the next maintenance");
            }
            if config.cleanup_policy.deletes() {
                if config.retention_ms >= 0 {
                    let cutoff = now_ms.saturating_sub(config.retention_ms);
                    let below = st.segments[..st.segments.len() - 1]
                        .iter()
                        .take_while(|s| s.max_timestamp < cutoff)
                        .last()
                        .map(|s| s.next_offset);
                    if let Some(offset) = below {
                        self.delete_segments_below(&mut st, offset)?;
                    }
                }
                if config.retention_bytes >= 0 {
                    let total: u64 = st.segments.iter().map(|s| s.size).sum();
                    let mut excess = total as i64 - config.retention_bytes;
                    let mut below = None;
                    for s in &st.segments[..st.segments.len() - 1] {
                        if excess < s.size as i64 {
                            break;
                        }
                        excess -= s.size as i64;
                        below = Some(s.next_offset);
                    }
                    if let Some(offset) = below {
                        self.delete_segments_below(&mut st, offset)?;
                    }
                }
            }
        }
        if config.cleanup_policy.compacts() {
            crate::compaction::compact(self, &config, now_ms)?;
        }
        self.checkpoint_recovery_point()?;
        self.persist_indexes();
        Ok(())
    }

    /// Persists the durable offset as the recovery point, if it moved.
    pub(crate) fn checkpoint_recovery_point(&self) -> Result<(), AppendError> {
        let durable = self.durable_offset();
        if self.lock().checkpointed_recovery_point == durable {
            return Ok(());
        }
        let storage = self.files.storage().clone();
        write_atomically(storage.as_ref(), &self.dir.join(RECOVERY_POINT_FILE), durable.to_string().as_bytes())
            .map_err(|e| io_append(&self.dir, e))?;
        self.lock().checkpointed_recovery_point = durable;
        Ok(())
    }

    /// fsyncs everything and checkpoints (clean shutdown).
    pub(crate) fn close(&self) -> Result<(), AppendError> {
        let end = {
            let st = self.lock();
            if st.offline.is_some() {
                return Ok(());
            }
            st.end_offset()
        };
        self.sync_to(end)?;
        self.checkpoint_recovery_point()?;
        self.persist_indexes();
        Ok(())
    }

    // --- access for compaction ---

    pub(crate) fn cleaned_up_to(&self) -> i64 {
        self.cleaned_up_to.load(Ordering::Relaxed)
    }

    pub(crate) fn set_cleaned_up_to(&self, offset: i64) {
        self.cleaned_up_to.store(offset, Ordering::Relaxed);
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn files(&self) -> &Arc<FileCache> {
        &self.files
    }

    pub(crate) fn decompressed_bytes_max(&self) -> usize {
        self.decompressed_bytes_max
    }

    /// (base offset, next offset, size, max timestamp, path) of every segment but the active one.
    pub(crate) fn closed_segments(&self) -> Vec<(i64, i64, u64, i64, PathBuf)> {
        let st = self.lock();
        st.segments[..st.segments.len() - 1]
            .iter()
            .map(|s| (s.base_offset, s.next_offset, s.size, s.max_timestamp, s.path.clone()))
            .collect()
    }

    /// Replaces a closed segment with a compacted file already written at `cleaned` (fsynced).
    pub(crate) fn swap_segment(
        &self,
        base_offset: i64,
        expected_size: u64,
        cleaned: &Path,
    ) -> Result<bool, AppendError> {
        let interval = self.config.read().expect("config lock").index_interval_bytes;
        let mut st = self.lock();
        let n = st.segments.len();
        let Some(i) = st.segments[..n - 1].iter().position(|s| s.base_offset == base_offset && s.size == expected_size)
        else {
            // Deleted or changed meanwhile: drop the cleaned copy.
            let _ = self.files.storage().remove_file(cleaned);
            return Ok(false);
        };
        let old = st.segments[i].clone();
        let file = self.files.storage().open(cleaned, false).map_err(|e| io_append(cleaned, e))?;
        let len = file.len().map_err(|e| io_append(cleaned, e))?;
        let mut seg = Segment::new(&self.dir, base_offset);
        let mut pos = 0;
        while let Some(h) = read_header(file.as_ref(), pos, len).map_err(|e| io_append(cleaned, e))? {
            let h = h?;
            seg.add_batch(&h, pos, interval, old.created_ms.unwrap_or(0));
            pos += h.size as u64;
        }
        seg.size = pos;
        seg.next_offset = old.next_offset;
        drop(file);
        self.files.forget(&old.path);
        // The old version's index files go before the new data is renamed in: no crash leaves
        // them beside the new data.
        index::remove(self.files.storage().as_ref(), &self.dir, base_offset).map_err(|e| io_append(&self.dir, e))?;
        self.files.storage().rename(cleaned, &old.path).map_err(|e| io_append(&old.path, e))?;
        self.files.storage().sync_dir(&self.dir).map_err(|e| io_append(&self.dir, e))?;
        st.segments[i] = seg;
        // The cleaned file was fsynced: its index files can be written now.
        st.unindexed.push(base_offset);
        Ok(true)
    }
}

impl Drop for Partition {
    /// Batches still buffered are lost with the partition (none was acknowledged); their bytes
    /// go back to the store's budget.
    fn drop(&mut self) {
        let budgeted = match self.state.get_mut() {
            Ok(st) => st.unwritten.budgeted,
            Err(poisoned) => poisoned.into_inner().unwritten.budgeted,
        };
        self.write_budget.give_back(budgeted);
    }
}
