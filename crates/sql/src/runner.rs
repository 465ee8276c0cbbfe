//! The loops that run stateful queries: read every partition of every source in timestamp
//! order ([`MergedReader`]), feed the records to the query's [`Pipeline`], and at the end of
//! each round append the outputs to the sink and commit the state changes with the input
//! positions ([`QueryStore::commit`]). Push queries run the same pipeline without a store.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::ast::SourceKind;
use crate::catalog::SourceDesc;
use crate::eventlog::{EventLog, LogRecord, OutRecord};
use crate::format::Serde;
use crate::operators::{Emitted, Failure, Pipeline};
use crate::stateful::StatefulPlan;
use crate::store::{Checkpoint, QueryStore};
use crate::value::Value;

/// Bytes read from a partition per read.
const READ_BYTES: usize = 1 << 20;
/// Most input records per round (a round ends with one changelog batch).
pub const ROUND_RECORDS_MAX: usize = 10_000;
/// How long a query waits for new records before checking whether it was stopped.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// One partition of one input.
struct Part {
    input: usize,
    topic: String,
    partition: u32,
    table: bool,
    /// Next offset to read, and next offset to process.
    read: i64,
    next: i64,
    end: i64,
    buffer: VecDeque<LogRecord>,
}

/// Reads the partitions of a query's inputs and hands out their records in timestamp order
/// (each partition's own order kept); table records go first on equal timestamps, so a
/// stream record sees the table as of its time.
pub struct MergedReader {
    parts: Vec<Part>,
}

impl MergedReader {
    /// Starts at the checkpoint's positions, else at the start (`earliest`) or end of each
    /// partition.
    pub fn new(
        log: &dyn EventLog,
        plan: &StatefulPlan,
        checkpoint: &Checkpoint,
        earliest: bool,
    ) -> Result<MergedReader, String> {
        let mut parts = Vec::new();
        for (i, input) in plan.inputs.iter().enumerate() {
            let source = &input.source;
            for p in 0..source.partitions {
                let (start, end) = log.offsets(&source.topic, p).map_err(|e| e.0)?;
                let at = checkpoint
                    .positions
                    .get(&(i as u32, p))
                    .copied()
                    .unwrap_or(if earliest || source.kind == SourceKind::Table { start } else { end });
                parts.push(Part {
                    input: i,
                    topic: source.topic.clone(),
                    partition: p,
                    table: source.kind == SourceKind::Table,
                    read: at,
                    next: at,
                    end,
                    buffer: VecDeque::new(),
                });
            }
        }
        Ok(MergedReader { parts })
    }

    /// Reads more records for every partition whose buffer is empty.
    pub fn fill(&mut self, log: &dyn EventLog) -> Result<(), String> {
        for part in &mut self.parts {
            if !part.buffer.is_empty() {
                continue;
            }
            let batch = log.read(&part.topic, part.partition, part.read, READ_BYTES).map_err(|e| e.0)?;
            part.end = batch.end_offset;
            if batch.next_offset > part.read {
                part.read = batch.next_offset;
                if batch.records.is_empty() {
                    // Only control batches or compacted gaps: nothing left to process before.
                    part.next = part.read;
                }
                part.buffer.extend(batch.records);
            }
        }
        Ok(())
    }

    /// The next record in timestamp order, or `None` when a partition that has more data must
    /// be read first (or there is nothing to read).
    pub fn next_record(&mut self) -> Option<(usize, LogRecord)> {
        let mut best: Option<usize> = None;
        for (i, part) in self.parts.iter().enumerate() {
            match part.buffer.front() {
                None if part.read < part.end => return None,
                None => {}
                Some(r) => {
                    let better = match best {
                        None => true,
                        Some(b) => {
                            let other = &self.parts[b];
                            let o = other.buffer.front().map(|x| x.timestamp).unwrap_or(i64::MAX);
                            (r.timestamp, !part.table) < (o, !other.table)
                        }
                    };
                    if better {
                        best = Some(i);
                    }
                }
            }
        }
        let part = &mut self.parts[best?];
        let r = part.buffer.pop_front()?;
        part.next = r.offset + 1;
        if part.buffer.is_empty() {
            part.next = part.next.max(part.read);
        }
        Some((part.input, r))
    }

    /// The positions of the records processed so far.
    pub fn checkpoint(&self, stream_time: i64) -> Checkpoint {
        Checkpoint {
            positions: self.parts.iter().map(|p| ((p.input as u32, p.partition), p.next)).collect(),
            stream_time,
        }
    }

    /// Waits until any partition has records past what was read, or `timeout` passes.
    pub fn wait(&self, log: &dyn EventLog, timeout: Duration) {
        let mut by_topic: BTreeMap<&str, Vec<(u32, i64)>> = BTreeMap::new();
        for p in &self.parts {
            by_topic.entry(&p.topic).or_default().push((p.partition, p.read));
        }
        if by_topic.len() == 1 {
            if let Some((topic, positions)) = by_topic.iter().next() {
                log.wait_any(topic, positions, timeout);
            }
            return;
        }
        let slice = (timeout / by_topic.len().max(1) as u32).max(Duration::from_millis(5));
        for (topic, positions) in &by_topic {
            if log.wait_any(topic, positions, slice) {
                return;
            }
        }
    }
}

/// The sink record for an output row; `serdes` are the sink's key and value serdes.
pub fn output_record(
    plan: &StatefulPlan,
    sink: &SourceDesc,
    serdes: &(Serde, Serde),
    e: &Emitted,
    round_robin: &mut u32,
) -> (u32, OutRecord) {
    let (key_serde, value_serde) = serdes;
    let keys: Vec<Value> = plan.key.iter().map(|&i| e.row[i].clone()).collect();
    let inner = key_serde.serialize(&keys);
    let partition = match &inner {
        Some(k) => runnel_records::partition_for_key(k, sink.partitions),
        None => {
            *round_robin = round_robin.wrapping_add(1);
            *round_robin % sink.partitions.max(1)
        }
    };
    let values: Option<Vec<Value>> =
        (!e.deleted).then(|| (0..e.row.len()).filter(|i| !plan.key.contains(i)).map(|i| e.row[i].clone()).collect());
    let record = OutRecord {
        key: sink.window_key(inner, e.window).map(Into::into),
        value: values.and_then(|v| value_serde.serialize(&v)).map(Into::into),
        headers: Vec::new(),
        timestamp: e.ts,
    };
    (partition, record)
}

fn failure_record(query: &str, plan: &StatefulPlan, f: &Failure) -> OutRecord {
    let topic = plan.inputs.get(f.input).map(|i| i.source.topic.clone()).unwrap_or_default();
    let message = serde_json::json!({
        "type": f.kind,
        "errorMessage": f.message,
        "topic": topic,
        "partition": f.partition,
        "offset": f.offset,
    });
    let now = crate::functions::now_ms();
    let value = serde_json::json!({ "LOGGER": query, "LEVEL": "ERROR", "TIME": now, "MESSAGE": message.to_string() });
    OutRecord { key: None, value: Some(value.to_string().into_bytes().into()), headers: Vec::new(), timestamp: now }
}

/// What a running stateful query needs besides its plan.
pub struct Running<'a> {
    pub log: &'a Arc<dyn EventLog>,
    pub id: &'a str,
    pub sink: &'a SourceDesc,
    pub state_dir: Option<&'a Path>,
    pub earliest: bool,
    pub cache: bool,
    pub stop: &'a AtomicBool,
    pub processed: &'a AtomicU64,
    /// Set once the state is restored: how.
    pub restored: &'a std::sync::Mutex<Option<RestoreInfo>>,
}

/// How a stateful query's state was restored when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreInfo {
    /// From the local snapshot (then only the changelog after it was read).
    pub from_snapshot: bool,
    /// Changelog records read.
    pub changelog_records: u64,
    /// State entries restored.
    pub entries: usize,
}

/// Runs a stateful persistent query until `stop`.
pub fn run_stateful(plan: Arc<StatefulPlan>, r: Running<'_>) -> Result<(), String> {
    let log = r.log.as_ref();
    let (mut store, restored) = QueryStore::open(r.log.clone(), r.id, r.state_dir).map_err(|e| e.0)?;
    tracing::info!(
        query = r.id,
        entries = restored.entries.len(),
        from_snapshot = restored.from_snapshot,
        changelog_records = restored.changelog_records,
        "stateful query restored"
    );
    let mut pipeline = Pipeline::new(plan.clone(), r.cache);
    pipeline.restore(&restored.entries)?;
    *r.restored.lock().unwrap_or_else(|e| e.into_inner()) = Some(RestoreInfo {
        from_snapshot: restored.from_snapshot,
        changelog_records: restored.changelog_records,
        entries: restored.entries.len(),
    });
    drop(restored.entries);
    let checkpoint = restored.checkpoint.unwrap_or_default();
    if !checkpoint.positions.is_empty() {
        pipeline.set_stream_time(checkpoint.stream_time);
    }
    let mut reader = MergedReader::new(log, &plan, &checkpoint, r.earliest)?;
    let mut last = checkpoint;
    let mut round_robin = 0u32;
    let sink_serdes = (r.sink.key_serde(), r.sink.value_serde());
    while !r.stop.load(Ordering::Relaxed) {
        reader.fill(log)?;
        let mut n = 0;
        while n < ROUND_RECORDS_MAX {
            let Some((input, record)) = reader.next_record() else { break };
            pipeline.process(input, &record);
            n += 1;
        }
        let checkpoint = reader.checkpoint(pipeline.stream_time());
        if n == 0 && checkpoint == last {
            reader.wait(log, IDLE_WAIT);
            continue;
        }
        // Outputs first (durably), then state and positions in one batch: a crash in between
        // repeats this round's outputs, never loses or double-counts input.
        let mut outputs: BTreeMap<u32, Vec<OutRecord>> = BTreeMap::new();
        for e in pipeline.take_output() {
            let (partition, record) = output_record(&plan, r.sink, &sink_serdes, &e, &mut round_robin);
            outputs.entry(partition).or_default().push(record);
        }
        for (partition, records) in outputs {
            log.append(&r.sink.topic, partition, &records, true).map_err(|e| e.0)?;
        }
        let failures: Vec<OutRecord> =
            pipeline.take_failures().iter().map(|f| failure_record(r.id, &plan, f)).collect();
        if !failures.is_empty() {
            let _ = log.append(crate::engine::PROCESSING_LOG_TOPIC, 0, &failures, false);
        }
        store.commit(pipeline.take_changes(), &checkpoint).map_err(|e| e.0)?;
        r.processed.fetch_add(n as u64, Ordering::Relaxed);
        if store.snapshot_due() {
            store.write_snapshot(&checkpoint, |put| pipeline.dump(put)).map_err(|e| e.0)?;
        }
        last = checkpoint;
    }
    // A clean stop leaves a snapshot, so the next start reads no changelog.
    store.write_snapshot(&last, |put| pipeline.dump(put)).map_err(|e| e.0)?;
    Ok(())
}

/// Runs a stateful push query: rows go to `tx` until it is closed, `stop`, or `limit`.
pub fn run_stateful_push(
    log: &dyn EventLog,
    plan: Arc<StatefulPlan>,
    earliest: bool,
    tx: &mpsc::SyncSender<Result<Vec<Value>, String>>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut pipeline = Pipeline::new(plan.clone(), false);
    let mut reader = MergedReader::new(log, &plan, &Checkpoint::default(), earliest)?;
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        reader.fill(log)?;
        let mut n = 0;
        while n < ROUND_RECORDS_MAX {
            let Some((input, record)) = reader.next_record() else { break };
            pipeline.process(input, &record);
            n += 1;
        }
        for e in pipeline.take_output() {
            if e.deleted {
                continue;
            }
            if tx.send(Ok(e.row)).is_err() {
                return Ok(());
            }
            sent += 1;
            if plan.limit.is_some_and(|l| sent >= l) {
                return Ok(());
            }
        }
        pipeline.take_failures();
        pipeline.take_changes();
        if n == 0 {
            reader.wait(log, IDLE_WAIT);
        }
    }
    Ok(())
}
