//! Model-based property test: random sequences of appends (random sizes, codecs, idempotent
//! producers), reads, rolls, syncs, maintenance (retention and compaction), DeleteRecords,
//! truncation, clean restarts, crashes (with torn writes), damaged index files and injected
//! faults, each checked against a simple in-memory model of the partition. Reads and
//! offset_for_timestamp after a restart use loaded index files, or rebuilt ones where an
//! earlier op damaged them, and must give the model's answers either way.
//!
//! Every synced record must survive any crash byte for byte; nothing may appear that was not
//! appended; offsets never go back below what was acknowledged. A failing case prints its
//! operations, tearing seeds included, and proptest shrinks it. `PROPTEST_CASES` sets the
//! number of cases (256 by default).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use runnel_log::{
    AppendError, CleanupPolicy, Log, Partition, ReadError, SimStorage, Storage, TimestampType, TopicConfig,
};
use runnel_records::{BatchBuilder, Compression, Record, RecordHeader};

use crate::common::*;

const TOPIC: &str = "m";
const KEYS: u8 = 6;

/// One record to append: key index, value length (None: a tombstone or null value),
/// timestamp jitter, header count.
type RecSpec = (Option<u8>, Option<usize>, i64, usize);

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: Vec<RecSpec>,
        codec: u8,
        idempotent: bool,
        split: bool,
        /// With `append_buffered`: written by the next sync (or write-through append, roll,
        /// truncation, maintenance or shutdown), invisible to readers before.
        buffered: bool,
    },
    RetryLastIdempotent,
    SequenceGap,
    Read {
        pick: u32,
        budget: usize,
    },
    OffsetForTimestamp {
        pick: i64,
    },
    Roll,
    Sync {
        whole: bool,
        pick: u32,
    },
    Maintenance {
        advance_ms: i64,
    },
    DeleteRecords {
        pick: u32,
    },
    Truncate {
        pick: u32,
    },
    Reopen,
    Crash {
        tear: bool,
        seed: u64,
    },
    FailWrite,
    FailSync,
    DiskFull,
    /// Damages one of the partition's index files (flips a byte, truncates or removes it).
    DamageIndex {
        pick: u32,
        at: u32,
    },
}

#[derive(Debug, Clone)]
struct Setup {
    policy: CleanupPolicy,
    segment_bytes: u64,
    index_interval_bytes: u32,
    retention_ms: i64,
    retention_bytes: i64,
    delete_retention_ms: i64,
    log_append_time: bool,
}

fn arb_setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just(CleanupPolicy::Delete), Just(CleanupPolicy::Compact), Just(CleanupPolicy::CompactDelete)],
        200u64..3_000,
        0u32..600,
        prop_oneof![Just(-1i64), 50i64..3_000],
        prop_oneof![Just(-1i64), 300i64..4_000],
        0i64..2_000,
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(policy, segment_bytes, index_interval_bytes, retention_ms, retention_bytes, delete_retention_ms, lat)| {
                Setup {
                    policy,
                    segment_bytes,
                    index_interval_bytes,
                    retention_ms,
                    retention_bytes,
                    delete_retention_ms,
                    log_append_time: lat,
                }
            },
        )
}

fn arb_record() -> impl Strategy<Value = RecSpec> {
    (prop::option::weighted(0.85, 0..KEYS), prop::option::weighted(0.85, 0usize..80), -40i64..40, 0usize..3)
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (
            prop::collection::vec(arb_record(), 1..8),
            0u8..5,
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.4),
        )
            .prop_map(|(records, codec, idempotent, split, buffered)| Op::Append {
                records,
                codec,
                idempotent,
                split,
                buffered
            }),
        1 => Just(Op::RetryLastIdempotent),
        1 => Just(Op::SequenceGap),
        5 => (any::<u32>(), 0usize..2_000).prop_map(|(pick, budget)| Op::Read { pick, budget }),
        1 => (-100i64..2_000).prop_map(|pick| Op::OffsetForTimestamp { pick }),
        2 => Just(Op::Roll),
        3 => (any::<bool>(), any::<u32>()).prop_map(|(whole, pick)| Op::Sync { whole, pick }),
        2 => (0i64..1_500).prop_map(|advance_ms| Op::Maintenance { advance_ms }),
        1 => any::<u32>().prop_map(|pick| Op::DeleteRecords { pick }),
        1 => any::<u32>().prop_map(|pick| Op::Truncate { pick }),
        1 => Just(Op::Reopen),
        3 => (any::<bool>(), any::<u64>()).prop_map(|(tear, seed)| Op::Crash { tear, seed }),
        1 => Just(Op::FailWrite),
        1 => Just(Op::FailSync),
        1 => Just(Op::DiskFull),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(pick, at)| Op::DamageIndex { pick, at }),
    ]
}

/// What a record must read back as.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MRec {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<RecordHeader>,
    ts: i64,
}

impl MRec {
    fn of(r: &Record) -> MRec {
        MRec { key: r.key.clone(), value: r.value.clone(), headers: r.headers.clone(), ts: r.timestamp }
    }
}

struct World {
    setup: Setup,
    storage: SimStorage,
    log: Option<Arc<Log>>,
    p: Option<Arc<Partition>>,
    /// Records that must be in the log (at and above `log_start`), or may be (below it).
    records: BTreeMap<i64, MRec>,
    /// The offset after the last appended record.
    next: i64,
    /// The offset after the last record readers see (the high watermark): records from here
    /// to `next` were appended with `append_buffered` and are not written yet.
    visible: i64,
    log_start: i64,
    /// Every record below this was acknowledged by sync_to.
    synced: i64,
    now: i64,
    offline: bool,
    counter: u64,
    pid: i64,
    seq: i32,
    /// The last idempotent batch appended in this session, and its offsets.
    last_idempotent: Option<(Bytes, i64, i64)>,
}

macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($fmt)+)));
        }
    };
}

macro_rules! check_eq {
    ($a:expr, $b:expr, $($fmt:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err(TestCaseError::fail(format!("{:?} != {:?}: {}", a, b, format!($($fmt)+))));
        }
    }};
}

type Res = Result<(), TestCaseError>;

impl World {
    fn new(setup: Setup) -> World {
        let storage = SimStorage::new();
        let log = open_sim(&storage);
        let mut tc = TopicConfig {
            cleanup_policy: setup.policy,
            segment_bytes: setup.segment_bytes,
            index_interval_bytes: setup.index_interval_bytes,
            retention_ms: setup.retention_ms,
            retention_bytes: setup.retention_bytes,
            delete_retention_ms: setup.delete_retention_ms,
            min_compaction_lag_ms: 0,
            ..TopicConfig::default()
        };
        if setup.log_append_time {
            tc.message_timestamp_type = TimestampType::LogAppendTime;
        }
        let p = topic(&log, TOPIC, tc);
        World {
            setup,
            storage,
            log: Some(log),
            p: Some(p),
            records: BTreeMap::new(),
            next: 0,
            visible: 0,
            log_start: 0,
            synced: 0,
            now: 1_000,
            offline: false,
            counter: 0,
            pid: 1,
            seq: 0,
            last_idempotent: None,
        }
    }

    fn p(&self) -> &Partition {
        self.p.as_ref().expect("open")
    }

    fn compacts(&self) -> bool {
        self.setup.policy.compacts()
    }

    /// The records of one batch, numbered so that every value is unique.
    fn build(&mut self, specs: &[RecSpec]) -> Vec<Record> {
        specs
            .iter()
            .map(|(key, len, jitter, headers)| {
                self.counter += 1;
                let n = self.counter;
                let key = key.map(|k| format!("key{k}").into_bytes());
                let value = match (len, &key) {
                    (None, _) => None,
                    (Some(len), _) => {
                        let mut v = format!("value{n}-").into_bytes();
                        v.resize(v.len() + len, b'a' + (n % 26) as u8);
                        Some(v)
                    }
                };
                let mut r = Record::new(key, value).at(self.now + jitter);
                for h in 0..*headers {
                    r = r.with_header(format!("h{h}"), Some(format!("{n}").into_bytes()));
                }
                r
            })
            .collect()
    }

    fn expect_offline_append(&self, result: Result<runnel_log::AppendInfo, AppendError>) -> Res {
        check!(matches!(result, Err(AppendError::Offline(_))), "append to an offline partition: {result:?}");
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Res {
        match op {
            Op::Append { records, codec, idempotent, split, buffered } => {
                let recs = self.build(records);
                let codec = Compression::from_attributes(i16::from(*codec)).unwrap();
                let producer = idempotent.then_some((self.pid, 0i16, self.seq));
                let bytes = if *split && !*idempotent && recs.len() > 1 {
                    let mid = recs.len() / 2;
                    let mut b = batch_with(&recs[..mid], codec, None).to_vec();
                    b.extend_from_slice(&batch_with(&recs[mid..], Compression::None, None));
                    Bytes::from(b)
                } else {
                    batch_with(&recs, codec, producer)
                };
                let result = if *buffered {
                    self.p().append_buffered(&bytes, self.now)
                } else {
                    self.p().append(&bytes, self.now)
                };
                if self.offline {
                    return self.expect_offline_append(result);
                }
                let info = result.map_err(|e| TestCaseError::fail(format!("append failed: {e}")))?;
                check_eq!(
                    (info.base_offset, info.last_offset),
                    (self.next, self.next + recs.len() as i64 - 1),
                    "offsets"
                );
                check!(!info.duplicate, "a new batch is no duplicate");
                for (i, r) in recs.iter().enumerate() {
                    let mut m = MRec::of(r);
                    if self.setup.log_append_time {
                        m.ts = self.now;
                    }
                    self.records.insert(self.next + i as i64, m);
                }
                if *idempotent {
                    self.seq += recs.len() as i32;
                    self.last_idempotent = Some((bytes, info.base_offset, info.last_offset));
                }
                self.next += recs.len() as i64;
            }
            Op::RetryLastIdempotent => {
                let Some((bytes, base, last)) = self.last_idempotent.clone() else { return Ok(()) };
                let result = self.p().append(&bytes, self.now);
                if self.offline {
                    return self.expect_offline_append(result);
                }
                let info = result.map_err(|e| TestCaseError::fail(format!("retry failed: {e}")))?;
                check!(info.duplicate, "a retry is a duplicate: {info:?}");
                check_eq!((info.base_offset, info.last_offset), (base, last), "a retry gets the original offsets");
            }
            Op::SequenceGap => {
                if self.last_idempotent.is_none() {
                    return Ok(());
                }
                let recs = self.build(&[(Some(0), Some(1), 0, 0)]);
                let bytes = batch_with(&recs, Compression::None, Some((self.pid, 0, self.seq + 1)));
                let result = self.p().append(&bytes, self.now);
                if self.offline {
                    return self.expect_offline_append(result);
                }
                check!(
                    matches!(result, Err(AppendError::OutOfOrderSequence { expected, .. }) if expected == self.seq),
                    "a sequence gap: {result:?}"
                );
            }
            Op::Read { pick, budget } => {
                let span = (self.visible - self.log_start + 3) as u32;
                let offset = self.log_start - 1 + i64::from(pick % span);
                let result = self.p().read(offset, *budget);
                if self.offline {
                    check!(matches!(result, Err(ReadError::Offline(_))), "read of an offline partition: {result:?}");
                    return Ok(());
                }
                if offset < self.log_start || offset > self.visible {
                    check!(
                        matches!(result, Err(ReadError::OffsetOutOfRange { .. })),
                        "read at {offset} outside {}..={}: {result:?}",
                        self.log_start,
                        self.visible
                    );
                    return Ok(());
                }
                let r = result.map_err(|e| TestCaseError::fail(format!("read at {offset}: {e}")))?;
                check_eq!((r.high_watermark, r.log_start_offset), (self.visible, self.log_start), "read's watermarks");
                let batches = decode(&r.records);
                let wanted: Vec<i64> = self.records.range(offset..self.visible).map(|(o, _)| *o).collect();
                if wanted.is_empty() {
                    check!(batches.is_empty(), "read at {offset} past the last record returned data");
                    return Ok(());
                }
                check!(!batches.is_empty(), "read at {offset} returned nothing; records remain from {}", wanted[0]);
                check!(
                    r.records.len() <= *budget || batches.len() == 1,
                    "read at {offset}: {} bytes in {} batches over a budget of {budget}",
                    r.records.len(),
                    batches.len()
                );
                check!(batches[0].0.last_offset() >= offset, "the first batch ends before {offset}");
                let mut got = Vec::new();
                for (_, records) in &batches {
                    for rec in records {
                        let m = self.records.get(&rec.offset);
                        check!(
                            m == Some(&MRec::of(rec)),
                            "read at {offset}: offset {} is {rec:?}, model {m:?}",
                            rec.offset
                        );
                        if rec.offset >= offset {
                            got.push(rec.offset);
                        }
                    }
                }
                check_eq!(got[..], wanted[..got.len().min(wanted.len())], "read at {offset} skipped records");
            }
            Op::OffsetForTimestamp { pick } => {
                let ts = self.now - 1_500 + pick;
                let result = self.p().offset_for_timestamp(ts);
                if self.offline {
                    check!(result.is_err(), "offset_for_timestamp on an offline partition");
                    return Ok(());
                }
                let expected =
                    self.records.range(self.log_start..self.visible).find(|(_, m)| m.ts >= ts).map(|(o, m)| (*o, m.ts));
                check_eq!(
                    result.map_err(|e| TestCaseError::fail(e.to_string()))?,
                    expected,
                    "offset_for_timestamp({ts})"
                );
                if let Some((o, t)) = self.p().max_timestamp() {
                    let live_max = self.records.range(self.log_start..self.visible).map(|(_, m)| m.ts).max();
                    check!(live_max.is_none_or(|m| t >= m), "max_timestamp {t} below the largest {live_max:?}");
                    if let Some(m) = self.records.get(&o).filter(|_| o >= self.log_start) {
                        check_eq!(m.ts, t, "max_timestamp's record");
                    }
                } else {
                    check!(self.records.range(self.log_start..self.visible).next().is_none(), "no max_timestamp");
                }
            }
            Op::Roll => {
                if !self.offline {
                    self.p().roll_now().map_err(|e| TestCaseError::fail(format!("roll: {e}")))?;
                }
            }
            Op::Sync { whole, pick } => {
                let target = if *whole {
                    self.next
                } else {
                    self.log_start + i64::from(*pick % (self.next - self.log_start + 1) as u32)
                };
                let result = self.p().sync_to(target);
                if self.offline {
                    check!(result.is_err(), "sync_to on an offline partition");
                } else {
                    result.map_err(|e| TestCaseError::fail(format!("sync_to({target}): {e}")))?;
                    self.synced = self.synced.max(target);
                }
            }
            Op::Maintenance { advance_ms } => {
                self.now += advance_ms;
                self.log.as_ref().unwrap().run_maintenance(self.now);
                if !self.offline {
                    self.reconcile(Why::Maintenance)?;
                }
            }
            Op::DeleteRecords { pick } => {
                if self.offline {
                    return Ok(());
                }
                let offset = self.log_start + i64::from(*pick % (self.visible - self.log_start + 1) as u32);
                let got = self.p().delete_records_before(offset).map_err(|e| TestCaseError::fail(e.to_string()))?;
                // The new log start is `offset`, or the base of the next segment when no record
                // lies between them.
                let wanted = offset.max(self.log_start);
                check!(
                    got >= wanted && self.records.range(wanted..got).next().is_none(),
                    "delete_records_before({offset}) moved the log start to {got}"
                );
                self.log_start = got;
            }
            Op::Truncate { pick } => {
                if self.offline || self.visible == self.log_start {
                    return Ok(());
                }
                let offset = self.log_start + i64::from(*pick % (self.visible - self.log_start) as u32);
                // The batch holding the first record at or after `offset` goes, with all after it.
                let first = decode(&self.p().read(offset, 1).map_err(|e| TestCaseError::fail(e.to_string()))?.records);
                let cut = first.first().map(|(h, _)| h.base_offset.min(offset)).unwrap_or(offset);
                self.p().truncate_to(offset).map_err(|e| TestCaseError::fail(format!("truncate_to({offset}): {e}")))?;
                let hw = self.p().high_watermark();
                check!(hw <= cut, "truncate_to({offset}) left the high watermark at {hw}, past {cut}");
                check!(
                    self.records.range(self.log_start.min(cut)..cut).next_back().is_none_or(|(o, _)| *o < hw),
                    "truncate_to({offset}) removed records below {cut}"
                );
                self.records.retain(|o, _| *o < hw);
                self.next = hw;
                self.visible = hw;
                self.synced = self.synced.min(hw);
                self.log_start = self.log_start.min(hw);
                self.new_producer();
            }
            Op::Reopen => {
                self.log.as_ref().unwrap().shutdown().map_err(|e| TestCaseError::fail(format!("shutdown: {e}")))?;
                self.reopen();
                self.last_idempotent = None;
                self.reconcile(Why::Clean)?;
            }
            Op::Crash { tear, seed } => {
                self.p = None;
                self.log = None;
                if *tear {
                    self.storage.crash(Some(&mut fastrand::Rng::with_seed(*seed)));
                } else {
                    self.storage.crash(None);
                }
                self.reopen();
                self.new_producer();
                self.reconcile(Why::Crash(if *tear { Some(*seed) } else { None }))?;
            }
            Op::FailWrite => {
                if self.offline {
                    return Ok(());
                }
                let recs = self.build(&[(Some(1), Some(10), 0, 0)]);
                self.storage.fail_writes(1);
                let result = self.p().append(&batch(&recs), self.now);
                self.storage.fail_writes(0);
                check!(matches!(result, Err(AppendError::Io { .. })), "append under EIO: {result:?}");
                check_eq!(self.p().high_watermark(), self.visible, "a failed append writes nothing");
            }
            Op::FailSync => {
                if self.offline || self.p().durable_offset() >= self.next {
                    return Ok(());
                }
                self.storage.fail_syncs(1);
                let result = self.p().sync_to(self.next);
                self.storage.fail_syncs(0);
                check!(result.is_err(), "sync_to under EIO succeeded");
                self.offline = true;
                let more = batch(&self.build(&[(None, Some(1), 0, 0)]));
                let again = self.p().append(&more, self.now);
                self.expect_offline_append(again)?;
            }
            Op::DamageIndex { pick, at } => {
                let dir = segment_path(TOPIC, 0, 0).parent().expect("a directory").to_path_buf();
                let names: Vec<String> = self
                    .storage
                    .list(&dir)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .into_iter()
                    .filter(|n| n.ends_with(".index") || n.ends_with(".timeindex") || n.ends_with(".producers"))
                    .collect();
                if names.is_empty() {
                    return Ok(());
                }
                let path = dir.join(&names[*pick as usize % names.len()]);
                let len = self.storage.open(&path, false).and_then(|f| f.len()).unwrap_or(0);
                match at % 3 {
                    0 if len > 0 => self.storage.corrupt(&path, u64::from(*at / 3) % len),
                    1 => {
                        let f = self.storage.open(&path, false).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        f.truncate(u64::from(*at / 3) % (len + 1)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                    _ => self.storage.remove_file(&path).map_err(|e| TestCaseError::fail(e.to_string()))?,
                }
            }
            Op::DiskFull => {
                if self.offline {
                    return Ok(());
                }
                let recs = self.build(&[(Some(2), Some(10), 0, 0)]);
                self.storage.set_capacity(Some(0));
                let result = self.p().append(&batch(&recs), self.now);
                self.storage.set_capacity(None);
                check!(matches!(result, Err(AppendError::StorageFull { .. })), "append to a full disk: {result:?}");
                check_eq!(self.p().high_watermark(), self.visible, "a failed append writes nothing");
            }
        }
        if !self.offline {
            let hw = self.p().high_watermark();
            // These write whatever is buffered; the others may, or may not (a buffered append
            // that rolls the segment writes those before it, a partial sync writes all or
            // nothing, a failed write nothing).
            let writes_all = matches!(
                op,
                Op::Append { buffered: false, .. }
                    | Op::RetryLastIdempotent
                    | Op::Sync { whole: true, .. }
                    | Op::Roll
                    | Op::Maintenance { .. }
                    | Op::Truncate { .. }
                    | Op::Reopen
                    | Op::Crash { .. }
            );
            if writes_all {
                check_eq!(hw, self.next, "high watermark after {op:?}");
            } else {
                check!(
                    self.visible <= hw && hw <= self.next,
                    "high watermark {hw} after {op:?} outside {}..={}",
                    self.visible,
                    self.next
                );
            }
            self.visible = hw;
            check_eq!(self.p().log_start_offset(), self.log_start, "log start after {op:?}");
        }
        Ok(())
    }

    fn new_producer(&mut self) {
        self.pid += 1;
        self.seq = 0;
        self.last_idempotent = None;
    }

    fn reopen(&mut self) {
        self.p = None;
        self.log = None;
        let log = open_sim(&self.storage);
        self.p = Some(log.partition(TOPIC, 0).expect("the topic survives"));
        self.log = Some(log);
        self.offline = false;
    }

    /// Reads the whole partition and checks it against the model, then makes the model match
    /// what is legitimately gone.
    fn reconcile(&mut self, why: Why) -> Res {
        let p = self.p();
        check_eq!(p.offline_reason(), None, "{why:?}");
        let hw = p.high_watermark();
        let ls = p.log_start_offset();
        match why {
            Why::Clean | Why::Maintenance => {
                check_eq!(hw, self.next, "{why:?}: the high watermark");
            }
            Why::Crash(_) => {
                check!(hw >= self.synced, "{why:?}: high watermark {hw} below the synced {}", self.synced);
                check!(hw <= self.next, "{why:?}: high watermark {hw} beyond the appended {}", self.next);
            }
        }
        match why {
            Why::Maintenance => {
                check!(ls >= self.log_start && ls <= hw, "{why:?}: log start {ls} (was {})", self.log_start);
                if ls > self.log_start {
                    check!(self.setup.policy.deletes(), "{why:?}: a compact-only topic lost {}..{ls}", self.log_start);
                    if self.setup.retention_bytes < 0 {
                        let cutoff = self.now - self.setup.retention_ms;
                        for (o, m) in self.records.range(self.log_start..ls) {
                            check!(m.ts < cutoff, "{why:?}: retention deleted offset {o} with timestamp {}", m.ts);
                        }
                    }
                }
            }
            _ => check_eq!(ls, self.log_start.min(hw), "{why:?}: the log start"),
        }
        let present: BTreeMap<i64, MRec> = read_everything(p).iter().map(|r| (r.offset, MRec::of(r))).collect();
        for (o, m) in &present {
            check!(self.records.get(o) == Some(m), "{why:?}: offset {o} is {m:?}, model {:?}", self.records.get(o));
        }
        for (o, m) in self.records.range(ls..) {
            if present.contains_key(o) {
                continue;
            }
            let superseded = self.records.range(o + 1..).any(|(_, later)| later.key.is_some() && later.key == m.key);
            let compacted = self.compacts()
                && m.key.is_some()
                && (superseded || (m.value.is_none() && m.ts < self.now - self.setup.delete_retention_ms));
            match why {
                Why::Maintenance => check!(compacted, "{why:?}: offset {o} ({m:?}) vanished"),
                Why::Clean => check!(false, "{why:?}: offset {o} ({m:?}) vanished"),
                Why::Crash(_) => check!(*o >= self.synced, "{why:?}: synced offset {o} ({m:?}) was lost"),
            }
        }
        self.records.retain(|o, _| *o < ls || present.contains_key(o));
        self.next = hw;
        self.visible = hw;
        self.log_start = ls;
        if matches!(why, Why::Crash(_)) {
            self.records.retain(|o, _| *o < hw);
            // What survived a crash is on disk.
            self.synced = hw;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Why {
    Clean,
    Maintenance,
    /// The tearing seed, if writes were torn.
    Crash(#[allow(dead_code)] Option<u64>),
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_log_matches_the_model(setup in arb_setup(), ops in prop::collection::vec(arb_op(), 1..40)) {
        let mut world = World::new(setup);
        for (i, op) in ops.iter().enumerate() {
            world.apply(op).map_err(|e| TestCaseError::fail(format!("op {i} {op:?}: {e}")))?;
        }
        // Finally: a crash without tearing keeps exactly what was synced, or more.
        world.apply(&Op::Crash { tear: false, seed: 0 })?;
        world.apply(&Op::Reopen)?;
    }
}

#[test]
fn builder_is_deterministic() {
    // The model relies on identical records building identical batches (retries).
    let mut b1 = BatchBuilder::new().producer(1, 0, 0);
    let mut b2 = BatchBuilder::new().producer(1, 0, 0);
    b1.push(rec("a", "b", 5));
    b2.push(rec("a", "b", 5));
    assert_eq!(b1.build(Compression::Zstd).unwrap(), b2.build(Compression::Zstd).unwrap());
}

fn replay(setup: Setup, ops: &[Op]) {
    let mut world = World::new(setup);
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = world.apply(op) {
            panic!("op {i} {op:?}: {e}");
        }
    }
    world.apply(&Op::Crash { tear: false, seed: 0 }).unwrap();
}

fn plain(n: usize) -> Op {
    Op::Append { records: vec![(None, None, 0, 0); n], codec: 0, idempotent: false, split: false, buffered: false }
}

#[test]
fn regression_truncate_after_crash() {
    let setup = Setup {
        policy: CleanupPolicy::Delete,
        segment_bytes: 525,
        index_interval_bytes: 0,
        retention_ms: -1,
        retention_bytes: -1,
        delete_retention_ms: 0,
        log_append_time: false,
    };
    let big = Op::Append {
        records: vec![
            (None, Some(20), 0, 0),
            (Some(0), Some(50), 0, 2),
            (None, Some(42), 0, 2),
            (None, Some(22), 0, 2),
            (Some(0), Some(14), 0, 1),
            (Some(0), None, 0, 2),
        ],
        codec: 0,
        idempotent: false,
        split: false,
        buffered: false,
    };
    replay(
        setup,
        &[
            plain(2),
            plain(5),
            big,
            plain(3),
            plain(2),
            plain(3),
            Op::Truncate { pick: 264116803 },
            Op::Crash { tear: false, seed: 0 },
            Op::Truncate { pick: 1635385227 },
        ],
    );
}

#[test]
fn regression_compaction_below_the_log_start_keeps_producer_state() {
    let setup = Setup {
        policy: CleanupPolicy::Compact,
        segment_bytes: 739,
        index_interval_bytes: 0,
        retention_ms: -1,
        retention_bytes: -1,
        delete_retention_ms: 0,
        log_append_time: false,
    };
    let append =
        |records: Vec<RecSpec>, idempotent| Op::Append { records, codec: 0, idempotent, split: false, buffered: false };
    replay(
        setup,
        &[
            append(vec![(None, None, 0, 0), (None, None, 0, 0), (Some(0), None, 0, 0)], true),
            append(vec![(None, Some(29), 0, 1), (Some(0), Some(11), 0, 2), (Some(0), Some(75), 0, 0)], false),
            Op::DeleteRecords { pick: 350338040 },
            append(
                vec![
                    (Some(0), Some(13), 0, 0),
                    (Some(0), Some(49), 0, 2),
                    (Some(0), Some(9), 0, 0),
                    (Some(0), Some(76), 0, 2),
                    (Some(0), Some(14), 0, 2),
                    (Some(0), Some(41), 0, 0),
                ],
                false,
            ),
            Op::Maintenance { advance_ms: 0 },
            Op::Reopen,
            append(vec![(None, None, 0, 0)], true),
        ],
    );
}
