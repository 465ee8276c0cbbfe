//! Append and read throughput of one partition, beside this machine's sequential write
//! bandwidth with fdatasync measured in the same run, so that their ratio is visible.
//!
//! Cases: 1 KiB uncompressed records in 16 KiB and 1 MiB batches, appended without fsync (one
//! writer) and with an fsync per batch (each of 1, 4 or 16 writer threads on ONE partition
//! appends with `append_buffered`, then `sync_to` its own last offset: group commit shares
//! fsyncs between them, and the batches appended between two fsyncs go out in one write), the
//! same with pipelined acknowledgements (each writer keeps up to 5 batches unacknowledged, as a
//! Kafka producer does with its default `max.in.flight.requests.per.connection`, and the broker
//! allows by appending a connection's next produce while the previous one waits), then
//! a sequential read of a whole partition in 1 MiB budgets. fsyncs are counted exactly by a
//! [`Storage`] wrapper around [`FsStorage`]; their mean duration (`ms/fsync`) comes from the
//! log's own fsync histogram, so a slow case can be told apart as "fsyncs too small" or
//! "fsyncs too slow". Right after each fsync case the bare disk is measured twice: `disk now`,
//! 1 MiB writes each fdatasynced (this shared machine's disk speed drifts within minutes, so a
//! reference taken at the start can be far off by the last case; `x now` is the case against
//! it), and `pattern`, written the way the case wrote (a new file, the same bytes per
//! fdatasync in one write, or in writes of the log's write buffer when more): `x pattern` is
//! what the log costs itself, apart from what the filesystem charges for the pattern.
//!
//! Environment: `RUNNEL_BENCH_BYTES` (bytes per case, default 512 MiB; `K`/`M`/`G` suffixes
//! allowed), `RUNNEL_BENCH_DIR` (default `<target>/bench-data`; must not be tmpfs),
//! `RUNNEL_BENCH_DISK_MBPS` (the disk bandwidth measured by fio in `bench/log.sh` with 1 MiB
//! writes; without it the ratio is against this binary's own 1 MiB write + fdatasync loop),
//! `RUNNEL_BENCH_DISK_16K_MBPS` (the same with 16 KiB writes; when set, a second ratio column).
//! MB = 10^6 bytes.

use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use runnel_log::{FsStorage, Log, LogConfig, Partition, Storage, StorageFile, TopicConfig};
use runnel_records::{BatchBuilder, Batches, Compression, Record};

const RECORD_BYTES: usize = 1024;
const DEFAULT_TOTAL_BYTES: u64 = 512 << 20;
const TOPIC: &str = "bench";
/// Unacknowledged batches per pipelined writer: the default of Kafka producers'
/// `max.in.flight.requests.per.connection` (Java, kafka-python; librdkafka's idempotent producer).
const PRODUCER_IN_FLIGHT: usize = 5;

/// [`FsStorage`] that counts the fsyncs of its files.
struct CountingStorage {
    inner: FsStorage,
    syncs: Arc<AtomicU64>,
}

struct CountingFile {
    inner: Arc<dyn StorageFile>,
    syncs: Arc<AtomicU64>,
}

impl StorageFile for CountingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

impl Storage for CountingStorage {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(CountingFile { inner: self.inner.open(path, create)?, syncs: self.syncs.clone() }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
}

/// A fresh log in its own temporary directory, with an fsync counter.
struct Bench {
    _dir: tempfile::TempDir,
    path: PathBuf,
    partition: Arc<Partition>,
    syncs: Arc<AtomicU64>,
}

fn open_bench(base: &Path, max_batch_bytes: usize) -> Bench {
    let dir = tempfile::Builder::new().prefix("append-").tempdir_in(base).expect("temp dir");
    let syncs = Arc::new(AtomicU64::new(0));
    let storage = Arc::new(CountingStorage { inner: FsStorage, syncs: syncs.clone() });
    let log = Log::open_with(LogConfig::new(dir.path()), storage).expect("open log");
    let config = TopicConfig { max_message_bytes: (max_batch_bytes * 2) as u32, ..TopicConfig::default() };
    log.create_topic(TOPIC, 1, config).expect("create topic");
    let partition = log.partition(TOPIC, 0).expect("partition 0");
    let path = dir.path().to_path_buf();
    // Only setup fsyncs so far; the cases count from zero.
    syncs.store(0, Ordering::Relaxed);
    Bench { _dir: dir, path, partition, syncs }
}

/// One uncompressed batch of `records` records of 1 KiB each.
fn build_batch(records: usize) -> Bytes {
    let mut builder = BatchBuilder::new();
    let now = runnel_log::now_ms();
    for i in 0..records {
        let mut value = vec![0u8; RECORD_BYTES];
        for (j, b) in value.iter_mut().enumerate() {
            *b = (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8;
        }
        builder.push(Record::new(None::<Bytes>, Some(value)).at(now));
    }
    builder.build(Compression::None).expect("build batch")
}

struct Row {
    case: String,
    bytes: u64,
    records: u64,
    secs: f64,
    fsyncs: Option<u64>,
    /// Mean time of the partition's data fsyncs (from the log's own fsync histogram).
    fsync_ms: Option<f64>,
    /// MB/s of the bare disk written in the same pattern (see [`same_pattern_bandwidth`]).
    pattern_mbps: Option<f64>,
    /// MB/s of the bare disk in 1 MiB writes, each fdatasynced, measured right after the case:
    /// this shared machine's disk speed drifts within minutes, so each case gets its own.
    disk_now_mbps: Option<f64>,
}

impl Row {
    fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
}

/// How each writer waits for its appends to be durable.
#[derive(Clone, Copy)]
enum Acks {
    /// Never: no fsync at all.
    None,
    /// Each batch is acknowledged (`sync_to` its last offset) before the writer appends the
    /// next one.
    EachBatch,
    /// Pipelined, as a Kafka producer with `max.in.flight.requests.per.connection` = N and a
    /// broker that appends a connection's next produce while the previous one waits for its
    /// fsync: a writer appends until N of its batches are unacknowledged, then waits until its
    /// oldest is durable. Every batch is still acknowledged only once an fsync covers it.
    InFlight(usize),
}

/// One append case: `batches` copies of `batch` split over `writers` threads, acknowledged as
/// `acks` says.
struct Case<'a> {
    label: String,
    batch: &'a Bytes,
    records_per_batch: usize,
    batches: u64,
    writers: u64,
    acks: Acks,
}

/// Runs `case` on a fresh partition.
fn run_append(base: &Path, case: &Case) -> Row {
    let Case { ref label, batch, records_per_batch, batches, writers, acks } = *case;
    let bench = open_bench(base, batch.len());
    let per_writer = batches.div_ceil(writers);
    let before = runnel_log::stats::fsync_latency();
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..writers {
            let p = bench.partition.clone();
            s.spawn(move || {
                let window = match acks {
                    Acks::None => 0,
                    Acks::EachBatch => 1,
                    Acks::InFlight(n) => n,
                };
                // End offsets of this writer's appended, unacknowledged batches, oldest first.
                let mut unacked = std::collections::VecDeque::with_capacity(window);
                for _ in 0..per_writer {
                    // Acknowledged only once synced, as the broker does acks=all produces.
                    let info = if window == 0 {
                        p.append(batch, runnel_log::now_ms())
                    } else {
                        p.append_buffered(batch, runnel_log::now_ms())
                    }
                    .expect("append");
                    if window == 0 {
                        continue;
                    }
                    unacked.push_back(info.last_offset + 1);
                    if unacked.len() >= window {
                        p.sync_to(unacked[0]).expect("sync_to");
                        let durable = p.durable_offset();
                        while unacked.front().is_some_and(|&end| end <= durable) {
                            unacked.pop_front();
                        }
                    }
                }
                if let Some(&end) = unacked.back() {
                    p.sync_to(end).expect("sync_to");
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let after = runnel_log::stats::fsync_latency();
    let timed = after.count - before.count;
    let fsync_ms = (timed > 0).then(|| 1e3 * (after.sum_seconds - before.sum_seconds) / timed as f64);
    let total = per_writer * writers;
    let fsyncs = bench.syncs.load(Ordering::Relaxed);
    Row {
        case: label.to_string(),
        bytes: total * batch.len() as u64,
        records: total * records_per_batch as u64,
        secs,
        fsyncs: Some(fsyncs),
        fsync_ms,
        pattern_mbps: None,
        disk_now_mbps: None,
    }
}

/// Reads the whole partition in order with 1 MiB budgets.
fn read_all(p: &Partition, label: &str) -> Row {
    let hw = p.high_watermark();
    let mut offset = p.log_start_offset();
    let (mut bytes, mut records) = (0u64, 0u64);
    let start = Instant::now();
    while offset < hw {
        let r = p.read(offset, 1 << 20).expect("read");
        assert!(!r.records.is_empty(), "empty read at {offset} below {hw}");
        for b in Batches::new(&r.records) {
            let (h, _) = b.expect("valid batch");
            records += u64::from(h.record_count as u32);
            offset = h.next_offset();
        }
        bytes += r.records.len() as u64;
    }
    Row {
        case: label.to_string(),
        bytes,
        records,
        secs: start.elapsed().as_secs_f64(),
        fsyncs: None,
        fsync_ms: None,
        pattern_mbps: None,
        disk_now_mbps: None,
    }
}

/// Drops the page cache of the partition's segment files (they are fsynced first).
fn drop_cache(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                let f = std::fs::File::open(&path).expect("open segment");
                f.sync_all().expect("fsync segment");
                // SAFETY: a valid open descriptor; advice only, no memory is touched.
                unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            }
        }
    }
}

/// Sequential write bandwidth of a new file with fdatasync: `total` bytes in writes of
/// `write_bytes`, an fdatasync after every `writes_per_sync` of them.
fn disk_bandwidth(base: &Path, total: u64, write_bytes: usize, writes_per_sync: u64) -> f64 {
    let dir = tempfile::Builder::new().prefix("disk-").tempdir_in(base).expect("temp dir");
    let mut f = std::fs::File::create(dir.path().join("seqwrite")).expect("create file");
    let block = vec![0x5au8; write_bytes];
    let n = total.div_ceil(block.len() as u64);
    let start = Instant::now();
    for i in 1..=n {
        f.write_all(&block).expect("write");
        if i % writes_per_sync == 0 || i == n {
            f.sync_data().expect("fdatasync");
        }
    }
    (n * block.len() as u64) as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// The bare disk written in `row`'s pattern: as many bytes per fdatasync as the log put in
/// each of its fsyncs, in one write (in writes of the log's write buffer when more, or of one
/// batch when a batch is larger). What the log reaches against this is what it adds or loses
/// itself; the rest is what this filesystem charges for the pattern (many small writes
/// between two fdatasyncs cost more than one large one, which is why the log buffers them).
fn same_pattern_bandwidth(base: &Path, total: u64, batch_bytes: usize, row: &Row) -> Option<f64> {
    let fsyncs = row.fsyncs.filter(|&n| n > 0)?;
    let per_sync = (row.bytes / fsyncs).max(batch_bytes as u64);
    let write_bytes = per_sync.min(runnel_log::WRITE_BUFFER_BYTES_MAX.max(batch_bytes) as u64);
    Some(disk_bandwidth(base, total, write_bytes as usize, (per_sync / write_bytes).max(1)))
}

/// An fsync case, followed by its two bare-disk references.
fn run_fsync_case(base: &Path, case: &Case, total: u64) -> Row {
    let mut row = run_append(base, case);
    row.pattern_mbps = same_pattern_bandwidth(base, total, case.batch.len(), &row);
    row.disk_now_mbps = Some(disk_bandwidth(base, total, 1 << 20, 1));
    row
}

fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()?.to_ascii_uppercase() {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mul)
}

fn bench_dir() -> PathBuf {
    if let Ok(d) = std::env::var("RUNNEL_BENCH_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("bench-data")
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments or filters.
    let total = std::env::var("RUNNEL_BENCH_BYTES")
        .ok()
        .map(|s| parse_bytes(&s).expect("RUNNEL_BENCH_BYTES: a byte count, e.g. 536870912 or 512M"))
        .unwrap_or(DEFAULT_TOTAL_BYTES);
    let base = bench_dir();
    std::fs::create_dir_all(&base).expect("create bench dir");
    let base = base.canonicalize().expect("bench dir");
    println!("runnel-log append bench: {} MiB per case in {}", total >> 20, base.display());

    let own_disk = disk_bandwidth(&base, total, 1 << 20, 1);
    let fio_disk = std::env::var("RUNNEL_BENCH_DISK_MBPS").ok().and_then(|s| s.trim().parse::<f64>().ok());
    println!("disk, 1 MiB writes + fdatasync each (this binary): {own_disk:.1} MB/s");
    let reference = match fio_disk {
        Some(f) => {
            println!("disk, fio seqwrite bs=1M fdatasync=1 (bench/log.sh): {f:.1} MB/s  <- ratio reference");
            f
        }
        None => {
            println!("(RUNNEL_BENCH_DISK_MBPS unset: ratio is against this binary's measurement)");
            own_disk
        }
    };
    let fio_disk_16k = std::env::var("RUNNEL_BENCH_DISK_16K_MBPS").ok().and_then(|s| s.trim().parse::<f64>().ok());
    if let Some(f) = fio_disk_16k {
        println!("disk, fio seqwrite bs=16k fdatasync=1 (bench/log.sh): {f:.1} MB/s  <- second ratio");
    }
    println!();

    let mut rows = Vec::new();
    for (size_label, records_per_batch) in [("16KiB", 16usize), ("1MiB", 1024)] {
        let batch = build_batch(records_per_batch);
        let batches = total.div_ceil(batch.len() as u64);
        println!(
            "{size_label} batches: {} B each ({records_per_batch} x {RECORD_BYTES} B records), {batches} per case",
            batch.len()
        );
        let case = |label: String, writers: u64, acks: Acks| Case {
            label,
            batch: &batch,
            records_per_batch,
            batches,
            writers,
            acks,
        };
        let plural = |writers: u64| if writers == 1 { "" } else { "s" };
        rows.push(run_append(&base, &case(format!("{size_label} no fsync, 1 writer"), 1, Acks::None)));
        for writers in [1u64, 4, 16] {
            let label = format!("{size_label} fsync/batch, {writers} writer{}", plural(writers));
            rows.push(run_fsync_case(&base, &case(label, writers, Acks::EachBatch), total));
        }
        for writers in [1u64, 4, 16] {
            let label = format!(
                "{size_label} fsync/batch, {writers} writer{} x {PRODUCER_IN_FLIGHT} in flight",
                plural(writers)
            );
            rows.push(run_fsync_case(&base, &case(label, writers, Acks::InFlight(PRODUCER_IN_FLIGHT)), total));
        }
        // Read back a freshly written partition: once from the page cache, once cold.
        let bench = open_bench(&base, batch.len());
        for _ in 0..batches {
            bench.partition.append(&batch, runnel_log::now_ms()).expect("append");
        }
        rows.push(read_all(&bench.partition, &format!("{size_label} read, page cache")));
        drop_cache(&bench.path);
        rows.push(read_all(&bench.partition, &format!("{size_label} read, cold (fadvise DONTNEED)")));
    }

    println!();
    println!(
        "{:<46} {:>9} {:>11} {:>7} {:>9} {:>8} {:>7} {:>9} {:>8} {:>9} {:>9}",
        "case",
        "MB/s",
        "records/s",
        "fsyncs",
        "B/fsync",
        "ms/fsync",
        "x disk",
        "disk now",
        "x now",
        "pattern",
        "x pattern"
    );
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let ratio =
        |mbps: f64, of: Option<f64>| of.map_or_else(|| "-".to_string(), |d| format!("{:.0}%", 100.0 * mbps / d));
    for r in &rows {
        let (fsyncs, per) = match r.fsyncs {
            Some(0) => ("0".to_string(), "-".to_string()),
            Some(n) => (n.to_string(), format!("{}", r.bytes / n)),
            None => ("-".to_string(), "-".to_string()),
        };
        let ms = r.fsync_ms.map(|m| format!("{m:.2}")).unwrap_or_else(|| "-".to_string());
        println!(
            "{:<46} {:>9.1} {:>11.0} {:>7} {:>9} {:>8} {:>6.0}% {:>9} {:>8} {:>9} {:>9}",
            r.case,
            r.mbps(),
            r.records as f64 / r.secs,
            fsyncs,
            per,
            ms,
            100.0 * r.mbps() / reference,
            cell(r.disk_now_mbps),
            ratio(r.mbps(), r.disk_now_mbps),
            cell(r.pattern_mbps),
            ratio(r.mbps(), r.pattern_mbps),
        );
    }
    let mut references = vec![("disk: 1 MiB write + fdatasync (binary)", own_disk, 1u64 << 20)];
    if let Some(f) = fio_disk {
        references.push(("disk: fio seqwrite bs=1M fdatasync=1", f, 1 << 20));
    }
    if let Some(f) = fio_disk_16k {
        references.push(("disk: fio seqwrite bs=16k fdatasync=1", f, 16 << 10));
    }
    for (label, mbps, write_bytes) in references {
        println!(
            "{:<46} {:>9.1} {:>11} {:>7} {:>9} {:>8} {:>6.0}%",
            label,
            mbps,
            "-",
            "-",
            write_bytes,
            "-",
            100.0 * mbps / reference
        );
    }
}
