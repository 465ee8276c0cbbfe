//! The operators of stateful queries, run over records of their sources in timestamp order:
//! table sources (which remember each key's row, so updates carry the old row), joins
//! (stream-stream in a time window, stream-table lookups, table-table on a primary or foreign
//! key), WHERE, and aggregations (GROUP BY, tumbling, hopping and session windows, HAVING,
//! EMIT CHANGES and EMIT FINAL).
//!
//! Rows flow as [`Change`]s: a stream record is a new row; a table record is a key's old row
//! and new row (either may be absent), so aggregations over tables retract the old row before
//! adding the new one. Each operator keeps its state in memory, notes which entries changed,
//! and hands them to the query's changelog at the end of every round ([`Pipeline::take_changes`]);
//! [`Pipeline::restore`] rebuilds the state from those entries.
//!
//! Time is the query's stream time: the greatest record timestamp seen. A window closes when
//! stream time passes its end plus the grace period; records for closed windows are late and
//! dropped (counted in [`Pipeline::late_records`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::aggregate::Accumulator;
use crate::ast::{JoinKind, SourceKind};
use crate::catalog::SYSTEM_COLUMNS;
use crate::codec::{CodecError, decode_row, encode_row};
use crate::eventlog::LogRecord;
use crate::format::Serde;
use crate::stateful::{AggregatePlan, JoinMode, JoinPlan, Node, StatefulPlan, Window};
use crate::value::Value;

pub type Row = Vec<Value>;

/// A change of the rows flowing between operators.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The table key (bytes of the primary key values); empty for streams.
    pub key: Vec<u8>,
    pub old: Option<Row>,
    pub new: Option<Row>,
    pub ts: i64,
}

/// A result row of the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// Values in projection order; for a deletion only the key columns are set.
    pub row: Row,
    pub deleted: bool,
    /// Window start and end of a windowed aggregation.
    pub window: Option<(i64, i64)>,
    pub ts: i64,
}

/// A record that could not be processed, for the processing log.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: &'static str,
    pub message: String,
    pub input: usize,
    pub partition: u32,
    pub offset: i64,
}

type Entries = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Store ids: the first byte of every changelog key.
const STORE_JOIN_BASE: u8 = 100;
const STORE_AGGREGATE: u8 = 200;

fn key_of(values: &[Value]) -> Vec<u8> {
    let mut k = Vec::new();
    values.iter().for_each(|v| v.key_bytes(&mut k));
    k
}

/// Sign-flipped big-endian, so byte order is numeric order.
fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_from(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.get(..8)?.try_into().ok()?) ^ (1 << 63)) as i64)
}

fn codec_err(e: CodecError) -> String {
    e.0
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn i64(&mut self) -> Result<i64, String> {
        let b = self.0.get(..8).ok_or("truncated state entry")?;
        self.0 = &self.0[8..];
        Ok(i64::from_be_bytes(b.try_into().map_err(|_| "truncated state entry")?))
    }
    fn u8(&mut self) -> Result<u8, String> {
        let b = *self.0.first().ok_or("truncated state entry")?;
        self.0 = &self.0[1..];
        Ok(b)
    }
    fn row(&mut self) -> Result<Row, String> {
        decode_row(&mut self.0).map_err(codec_err)
    }
}

/// A table source's rows by key.
#[derive(Default)]
struct TableRows {
    rows: HashMap<Vec<u8>, Row>,
    dirty: BTreeSet<Vec<u8>>,
}

/// The state of one join.
struct JoinState {
    plan: JoinPlan,
    left: OpNode,
    store: u8,
    /// Table-table: the left rows by left key, and left keys by join key.
    left_rows: HashMap<Vec<u8>, Row>,
    by_join_key: HashMap<Vec<u8>, BTreeSet<Vec<u8>>>,
    left_dirty: BTreeSet<Vec<u8>>,
    /// Stream-stream: buffered rows per side by (join key, timestamp, sequence).
    buffers: [BTreeMap<BufferKey, Buffered>; 2],
    /// Buffered entries by time, for expiry: (ts, side, join key, seq).
    by_time: BTreeSet<(i64, u8, Vec<u8>, u64)>,
    /// Outer rows waiting for their window to close unmatched: (close time, side, join key,
    /// ts, seq).
    outer_pending: BTreeSet<(i64, u8, Vec<u8>, i64, u64)>,
    buffer_dirty: BTreeSet<(u8, Vec<u8>, i64, u64)>,
    seq: u64,
}

/// A buffered stream-stream record: (join key, timestamp, sequence).
type BufferKey = (Vec<u8>, i64, u64);

/// A group key with its window, if any.
type Target = (Vec<u8>, Option<(i64, i64)>);

#[derive(Debug, Clone)]
struct Buffered {
    row: Row,
    matched: bool,
    /// The outer-join row with nulls was emitted already.
    outer_done: bool,
}

enum OpNode {
    Source(usize),
    Join(Box<JoinState>),
}

/// One group of an aggregation (one window of it, with windows).
#[derive(Debug, Clone)]
struct Group {
    keys: Row,
    window: Option<(i64, i64)>,
    /// Rows contributing (a table aggregation removes the group at zero).
    rows: i64,
    ts: i64,
    /// Whether a row for it was emitted (so a failing HAVING or removal emits a deletion).
    emitted: bool,
    accs: Vec<Accumulator>,
}

struct AggState {
    plan: AggregatePlan,
    retract: bool,
    groups: BTreeMap<Vec<u8>, Group>,
    dirty: BTreeSet<Vec<u8>>,
    /// EMIT FINAL: windows waiting to close, by close time.
    pending: BTreeSet<(i64, Vec<u8>)>,
    /// Windows by the time they leave the state; with ROW_TTL, groups by the time they expire.
    expiry: BTreeSet<(i64, Vec<u8>)>,
    /// Groups changed this round (emitted at the end of the round when caching).
    touched: BTreeSet<Vec<u8>>,
    /// Deletions of groups removed this round, when caching.
    removed: BTreeMap<Vec<u8>, Emitted>,
}

/// The operators of one query and their state.
pub struct Pipeline {
    plan: Arc<StatefulPlan>,
    serdes: Vec<(Serde, Serde)>,
    tables: Vec<Option<TableRows>>,
    root: OpNode,
    agg: Option<AggState>,
    stream_time: i64,
    /// Emit each group once per round with its latest value (ksqlDB's record cache) rather
    /// than after every record.
    cache: bool,
    late: u64,
    out: Vec<Emitted>,
    failures: Vec<Failure>,
}

fn build_node(node: &Node, next_store: &mut u8) -> OpNode {
    match node {
        Node::Source(i) => OpNode::Source(*i),
        Node::Join(j) => {
            let left = build_node(&j.left, next_store);
            let store = *next_store;
            *next_store += 1;
            OpNode::Join(Box::new(JoinState {
                plan: j.clone(),
                left,
                store,
                left_rows: HashMap::new(),
                by_join_key: HashMap::new(),
                left_dirty: BTreeSet::new(),
                buffers: [BTreeMap::new(), BTreeMap::new()],
                by_time: BTreeSet::new(),
                outer_pending: BTreeSet::new(),
                buffer_dirty: BTreeSet::new(),
                seq: 0,
            }))
        }
    }
}

impl Pipeline {
    pub fn new(plan: Arc<StatefulPlan>, cache: bool) -> Pipeline {
        let serdes = plan
            .inputs
            .iter()
            .map(|i| {
                let used = plan.used.get(i.offset..i.offset + i.width).unwrap_or(&[]);
                (i.source.key_serde(), i.source.value_serde_reading(used))
            })
            .collect();
        let tables =
            plan.inputs.iter().map(|i| (i.source.kind == SourceKind::Table).then(TableRows::default)).collect();
        let mut next_store = STORE_JOIN_BASE;
        let root = build_node(&plan.root, &mut next_store);
        let agg = plan.aggregate.as_ref().map(|a| AggState {
            plan: a.clone(),
            retract: plan.root.kind(&plan.inputs) == SourceKind::Table,
            groups: BTreeMap::new(),
            dirty: BTreeSet::new(),
            pending: BTreeSet::new(),
            expiry: BTreeSet::new(),
            touched: BTreeSet::new(),
            removed: BTreeMap::new(),
        });
        Pipeline {
            plan,
            serdes,
            tables,
            root,
            agg,
            stream_time: i64::MIN,
            cache,
            late: 0,
            out: Vec::new(),
            failures: Vec::new(),
        }
    }

    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }

    pub fn set_stream_time(&mut self, t: i64) {
        self.stream_time = t;
    }

    /// Records dropped because their window had closed.
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// Processes one record of input `input`.
    pub fn process(&mut self, input: usize, r: &LogRecord) {
        let source = &self.plan.inputs[input].source;
        let (key_serde, value_serde) = &self.serdes[input];
        let fail = |kind, message: String| Failure { kind, message, input, partition: r.partition, offset: r.offset };
        let change = match source.decode(key_serde, value_serde, r) {
            Err(e) => {
                self.failures.push(fail("DESERIALIZATION_ERROR", e.0));
                return;
            }
            Ok(row) => {
                let ts = row.as_ref().and_then(|r| r[0].as_i64()).unwrap_or(r.timestamp);
                match &mut self.tables[input] {
                    None => match row {
                        Some(row) => Change { key: Vec::new(), old: None, new: Some(row), ts },
                        None => return,
                    },
                    Some(table) => {
                        let key = match &row {
                            Some(row) => key_of(&row[SYSTEM_COLUMNS..SYSTEM_COLUMNS + source.key_columns.len()]),
                            None => match key_serde.deserialize(r.key.as_deref()) {
                                Ok(k) => key_of(&k),
                                Err(e) => {
                                    self.failures.push(fail("DESERIALIZATION_ERROR", e.0));
                                    return;
                                }
                            },
                        };
                        let old = match &row {
                            Some(row) => table.rows.insert(key.clone(), row.clone()),
                            None => table.rows.remove(&key),
                        };
                        table.dirty.insert(key.clone());
                        if old.is_none() && row.is_none() {
                            return;
                        }
                        Change { key, old, new: row, ts }
                    }
                }
            }
        };
        self.stream_time = self.stream_time.max(change.ts);
        let mut changes = Vec::new();
        let mut errors = Vec::new();
        push(&mut self.root, &self.tables, input, change, self.stream_time, &mut changes, &mut errors);
        for e in errors {
            self.failures.push(fail("EVALUATION_ERROR", e));
        }
        for c in changes {
            if let Err(e) = self.downstream(c) {
                self.failures.push(fail("EVALUATION_ERROR", e));
            }
        }
        // Windows that closed or expired as stream time moved.
        self.advance();
    }

    /// Processes a row of input `input` given directly (a pull query over a table's
    /// snapshot): a new row, as if just inserted.
    pub fn process_row(&mut self, input: usize, row: Row) {
        let ts = row.first().and_then(Value::as_i64).unwrap_or(0);
        let change = Change { key: Vec::new(), old: None, new: Some(row), ts };
        let mut changes = Vec::new();
        let mut errors = Vec::new();
        push(&mut self.root, &self.tables, input, change, self.stream_time, &mut changes, &mut errors);
        for c in changes {
            if let Err(e) = self.downstream(c) {
                errors.push(e);
            }
        }
        for e in errors {
            self.failures.push(Failure { kind: "EVALUATION_ERROR", message: e, input, partition: 0, offset: -1 });
        }
    }

    /// WHERE, then the aggregation or the projection.
    fn downstream(&mut self, c: Change) -> Result<(), String> {
        let pass = |row: Option<Row>, filter: &Option<crate::expr::Compiled>| -> Result<Option<Row>, String> {
            match (row, filter) {
                (Some(r), Some(f)) => Ok(if f.test(&r).map_err(|e| e.0)? { Some(r) } else { None }),
                (r, _) => Ok(r),
            }
        };
        let old = pass(c.old, &self.plan.filter)?;
        let new = pass(c.new, &self.plan.filter)?;
        if old.is_none() && new.is_none() {
            return Ok(());
        }
        if self.agg.is_some() {
            return self.aggregate(old, new, c.ts);
        }
        let plan = &self.plan;
        let project = |row: &Row| -> Result<Row, String> {
            plan.columns.iter().map(|(_, c)| c.eval(row).map_err(|e| e.0)).collect()
        };
        match (plan.output, new) {
            (SourceKind::Table, None) => {
                if let Some(old) = old {
                    let full = project(&old)?;
                    let mut row = vec![Value::Null; full.len()];
                    for &k in &plan.key {
                        row[k] = full[k].clone();
                    }
                    self.out.push(Emitted { row, deleted: true, window: None, ts: c.ts });
                }
            }
            (_, Some(new)) => {
                let row = project(&new)?;
                self.out.push(Emitted { row, deleted: false, window: None, ts: c.ts });
            }
            (SourceKind::Stream, None) => {}
        }
        Ok(())
    }

    fn aggregate(&mut self, old: Option<Row>, new: Option<Row>, ts: i64) -> Result<(), String> {
        let stream_time = self.stream_time;
        let Some(agg) = self.agg.as_mut() else { return Ok(()) };
        let group_key = |row: &Row, plan: &AggregatePlan| -> Result<Row, String> {
            plan.group_by.iter().map(|g| g.eval(row).map_err(|e| e.0)).collect()
        };
        if let Some(old) = old {
            // A table row changed or left: retract it from its group.
            let keys = group_key(&old, &agg.plan)?;
            let gk = key_of(&keys);
            let mut remove = false;
            if let Some(group) = agg.groups.get_mut(&gk) {
                for (call, args) in &agg.plan.calls {
                    let _ = (call, args);
                }
                for ((call, args), acc) in agg.plan.calls.iter().zip(group.accs.iter_mut()) {
                    let values: Result<Vec<Value>, String> =
                        args.iter().map(|a| a.eval(&old).map_err(|e| e.0)).collect();
                    call.retract(acc, &values?)?;
                }
                group.rows -= 1;
                group.ts = group.ts.max(ts);
                remove = group.rows <= 0;
                agg.dirty.insert(gk.clone());
            }
            if remove {
                let group = agg.groups.remove(&gk);
                if let Some(g) = group
                    && g.emitted
                {
                    let deletion = deletion_of(&self.plan, &agg.plan, &g);
                    if self.cache {
                        agg.touched.remove(&gk);
                        agg.removed.insert(gk.clone(), deletion);
                    } else {
                        self.out.push(deletion);
                    }
                }
            } else if agg.groups.contains_key(&gk) {
                touch(agg, &self.plan, &gk, self.cache, &mut self.out)?;
            }
        }
        let Some(new) = new else { return Ok(()) };
        let keys = group_key(&new, &agg.plan)?;
        if keys.iter().any(Value::is_null) {
            // ksqlDB drops rows whose GROUP BY key is null.
            return Ok(());
        }
        let gk = key_of(&keys);
        let args: Vec<Vec<Value>> = agg
            .plan
            .calls
            .iter()
            .map(|(_, args)| args.iter().map(|a| a.eval(&new).map_err(|e| e.0)).collect::<Result<Vec<_>, _>>())
            .collect::<Result<_, _>>()?;
        let windows: Vec<(i64, i64)> = match agg.plan.window.as_ref().map(|w| (w.window, w.grace)) {
            None => vec![],
            Some((Window::Tumbling { size }, grace)) => {
                let start = ts - ts.rem_euclid(size);
                let w = vec![(start, start.saturating_add(size))];
                accept_windows(w, grace, stream_time)
            }
            Some((Window::Hopping { size, advance }, grace)) => {
                let mut w = Vec::new();
                let mut start = ts - ts.rem_euclid(advance);
                while start > ts - size {
                    w.push((start, start.saturating_add(size)));
                    start -= advance;
                }
                w.reverse();
                accept_windows(w, grace, stream_time)
            }
            Some((Window::Session { gap }, grace)) => {
                return self.session(&keys, gk, &args, ts, gap, grace);
            }
        };
        if agg.plan.window.is_some() && windows.is_empty() {
            self.late += 1;
            return Ok(());
        }
        let targets: Vec<Target> = if agg.plan.window.is_none() {
            vec![(gk, None)]
        } else {
            windows
                .into_iter()
                .map(|(s, e)| {
                    let mut k = gk.clone();
                    k.extend_from_slice(&time_bytes(s));
                    (k, Some((s, e)))
                })
                .collect()
        };
        let retract = agg.retract;
        for (k, window) in targets {
            let group = match agg.groups.get_mut(&k) {
                Some(g) => g,
                None => {
                    let accs = agg.plan.calls.iter().map(|(c, _)| c.init(retract)).collect();
                    if let (Some((start, end)), Some(w)) = (window, &agg.plan.window) {
                        if agg.plan.emit_final {
                            agg.pending.insert((end.saturating_add(w.grace), k.clone()));
                        }
                        agg.expiry.insert((start.saturating_add(w.retention), k.clone()));
                        let _ = end;
                    }
                    agg.groups.entry(k.clone()).or_insert(Group {
                        keys: keys.clone(),
                        window,
                        rows: 0,
                        ts,
                        emitted: false,
                        accs,
                    })
                }
            };
            for (((call, _), acc), values) in agg.plan.calls.iter().zip(group.accs.iter_mut()).zip(&args) {
                call.add(acc, values)?;
            }
            group.rows += 1;
            if let Some(ttl) = agg.plan.row_ttl_ms {
                // ROW_TTL: the group lives until `ttl` after its latest record.
                agg.expiry.remove(&(group.ts.saturating_add(ttl), k.clone()));
                group.ts = group.ts.max(ts);
                agg.expiry.insert((group.ts.saturating_add(ttl), k.clone()));
            }
            group.ts = group.ts.max(ts);
            agg.dirty.insert(k.clone());
            if !agg.plan.emit_final {
                touch(agg, &self.plan, &k, self.cache, &mut self.out)?;
            }
        }
        Ok(())
    }

    /// A record of a session-windowed aggregation: merges every session of its key within the
    /// gap into one.
    fn session(
        &mut self,
        keys: &Row,
        gk: Vec<u8>,
        args: &[Vec<Value>],
        ts: i64,
        gap: i64,
        grace: i64,
    ) -> Result<(), String> {
        let stream_time = self.stream_time;
        let Some(agg) = self.agg.as_mut() else { return Ok(()) };
        let retention = agg.plan.window.as_ref().map(|w| w.retention).unwrap_or(gap + grace);
        let overlapping: Vec<Vec<u8>> = agg
            .groups
            .range(gk.clone()..)
            .take_while(|(k, _)| k.starts_with(&gk) && k.len() == gk.len() + 8)
            .filter(|(_, g)| g.window.is_some_and(|(s, e)| s.saturating_sub(gap) <= ts && ts <= e.saturating_add(gap)))
            .map(|(k, _)| k.clone())
            .collect();
        let (mut start, mut end) = (ts, ts);
        let mut merged: Option<Group> = None;
        for k in &overlapping {
            if let Some(g) = agg.groups.remove(k) {
                agg.dirty.insert(k.clone());
                if let Some((s, e)) = g.window {
                    start = start.min(s);
                    end = end.max(e);
                    agg.pending.remove(&(e.saturating_add(gap).saturating_add(grace), k.clone()));
                    agg.expiry.remove(&(e.saturating_add(retention), k.clone()));
                }
                if g.emitted && !agg.plan.emit_final {
                    let deletion = deletion_of(&self.plan, &agg.plan, &g);
                    if self.cache {
                        agg.touched.remove(k);
                        agg.removed.insert(k.clone(), deletion);
                    } else {
                        self.out.push(deletion);
                    }
                }
                merged = Some(match merged {
                    None => g,
                    Some(mut m) => {
                        // Sessions are visited in start order: `g` is the later one.
                        for ((call, _), (into, other)) in agg.plan.calls.iter().zip(m.accs.iter_mut().zip(g.accs)) {
                            call.merge(into, other)?;
                        }
                        m.rows += g.rows;
                        m.ts = m.ts.max(g.ts);
                        m
                    }
                });
            }
        }
        if end.saturating_add(gap).saturating_add(grace) < stream_time && merged.is_none() {
            self.late += 1;
            return Ok(());
        }
        let mut group = merged.unwrap_or_else(|| Group {
            keys: keys.clone(),
            window: None,
            rows: 0,
            ts,
            emitted: false,
            accs: agg.plan.calls.iter().map(|(c, _)| c.init(false)).collect(),
        });
        group.window = Some((start, end));
        group.emitted = false;
        for (((call, _), acc), values) in agg.plan.calls.iter().zip(group.accs.iter_mut()).zip(args) {
            call.add(acc, values)?;
        }
        group.rows += 1;
        group.ts = group.ts.max(ts);
        let mut k = gk;
        k.extend_from_slice(&time_bytes(start));
        if agg.plan.emit_final {
            agg.pending.insert((end.saturating_add(gap).saturating_add(grace), k.clone()));
        }
        agg.expiry.insert((end.saturating_add(retention), k.clone()));
        agg.groups.insert(k.clone(), group);
        agg.removed.remove(&k);
        agg.dirty.insert(k.clone());
        if !agg.plan.emit_final {
            touch(agg, &self.plan, &k, self.cache, &mut self.out)?;
        }
        Ok(())
    }

    /// Emits outer-join rows and windows that closed (EMIT FINAL) and forgets join buffers
    /// and windows past their retention.
    fn advance(&mut self) {
        let now = self.stream_time;
        let mut changes = Vec::new();
        let mut errors = Vec::new();
        expire_tree(&mut self.root, &self.tables, now, &mut changes, &mut errors);
        for c in changes {
            if let Err(e) = self.downstream(c) {
                errors.push(e);
            }
        }
        for e in errors {
            self.failures.push(Failure { kind: "EVALUATION_ERROR", message: e, input: 0, partition: 0, offset: -1 });
        }
        let Some(agg) = self.agg.as_mut() else { return };
        while let Some((at, _)) = agg.pending.first() {
            if *at > now {
                break;
            }
            let Some((_, k)) = agg.pending.pop_first() else { break };
            if let Some(g) = agg.groups.get_mut(&k) {
                match result_of(&self.plan, &agg.plan, g) {
                    Ok(Some(e)) => {
                        g.emitted = true;
                        self.out.push(e);
                    }
                    Ok(None) => {}
                    Err(e) => self.failures.push(Failure {
                        kind: "EVALUATION_ERROR",
                        message: e,
                        input: 0,
                        partition: 0,
                        offset: -1,
                    }),
                }
                // A closed window takes no more records: its state is done.
                agg.groups.remove(&k);
                agg.dirty.insert(k.clone());
            }
        }
        while let Some((at, _)) = agg.expiry.first() {
            if *at > now {
                break;
            }
            let Some((_, k)) = agg.expiry.pop_first() else { break };
            if let Some(g) = agg.groups.remove(&k) {
                // An expired row (ROW_TTL) leaves the table; expired windows just leave the state.
                if agg.plan.row_ttl_ms.is_some() && g.emitted {
                    let deletion = deletion_of(&self.plan, &agg.plan, &g);
                    agg.touched.remove(&k);
                    self.out.push(deletion);
                }
                agg.dirty.insert(k);
            }
        }
    }

    /// The results of the round so far (with caching, each changed group once, now).
    pub fn take_output(&mut self) -> Vec<Emitted> {
        if let Some(agg) = self.agg.as_mut() {
            let touched = std::mem::take(&mut agg.touched);
            for k in touched {
                if let Some(g) = agg.groups.get_mut(&k) {
                    match result_of(&self.plan, &agg.plan, g) {
                        Ok(Some(e)) => {
                            g.emitted = !e.deleted;
                            agg.dirty.insert(k);
                            self.out.push(e);
                        }
                        Ok(None) => {}
                        Err(e) => self.failures.push(Failure {
                            kind: "EVALUATION_ERROR",
                            message: e,
                            input: 0,
                            partition: 0,
                            offset: -1,
                        }),
                    }
                }
            }
            self.out.extend(std::mem::take(&mut agg.removed).into_values());
        }
        std::mem::take(&mut self.out)
    }

    pub fn take_failures(&mut self) -> Vec<Failure> {
        std::mem::take(&mut self.failures)
    }

    /// The state entries changed since the last call (changelog keys and values; `None`
    /// deletes).
    pub fn take_changes(&mut self) -> Entries {
        let mut out = Vec::new();
        for (i, table) in self.tables.iter_mut().enumerate() {
            let Some(t) = table else { continue };
            for k in std::mem::take(&mut t.dirty) {
                let mut key = vec![i as u8];
                key.extend_from_slice(&k);
                let value = t.rows.get(&k).map(|row| {
                    let mut v = Vec::new();
                    encode_row(row, &mut v);
                    v
                });
                out.push((key, value));
            }
        }
        join_changes(&mut self.root, &mut out);
        if let Some(agg) = self.agg.as_mut() {
            for k in std::mem::take(&mut agg.dirty) {
                let mut key = vec![STORE_AGGREGATE];
                key.extend_from_slice(&k);
                let value = agg.groups.get(&k).map(|g| encode_group(&agg.plan, g));
                out.push((key, value));
            }
        }
        out
    }

    /// Every state entry (for a snapshot).
    pub fn dump(&self, put: &mut dyn FnMut(&[u8], &[u8])) {
        for (i, table) in self.tables.iter().enumerate() {
            let Some(t) = table else { continue };
            for (k, row) in &t.rows {
                let mut key = vec![i as u8];
                key.extend_from_slice(k);
                let mut v = Vec::new();
                encode_row(row, &mut v);
                put(&key, &v);
            }
        }
        dump_joins(&self.root, put);
        if let Some(agg) = &self.agg {
            for (k, g) in &agg.groups {
                let mut key = vec![STORE_AGGREGATE];
                key.extend_from_slice(k);
                put(&key, &encode_group(&agg.plan, g));
            }
        }
    }

    /// Rebuilds the state from changelog entries.
    pub fn restore(&mut self, entries: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(), String> {
        for (k, v) in entries {
            let Some((&store, key)) = k.split_first() else { continue };
            if let Some(Some(table)) = self.tables.get_mut(store as usize) {
                table.rows.insert(key.to_vec(), Cursor(v).row()?);
            } else if store == STORE_AGGREGATE {
                let Some(agg) = self.agg.as_mut() else { continue };
                let g = decode_group(&agg.plan, v)?;
                if let (Some((start, end)), Some(w)) = (g.window, &agg.plan.window) {
                    let (close, expire) = match w.window {
                        Window::Session { gap } => {
                            (end.saturating_add(gap).saturating_add(w.grace), end.saturating_add(w.retention))
                        }
                        _ => (end.saturating_add(w.grace), start.saturating_add(w.retention)),
                    };
                    if agg.plan.emit_final {
                        agg.pending.insert((close, key.to_vec()));
                    }
                    agg.expiry.insert((expire, key.to_vec()));
                }
                if let (None, Some(ttl)) = (g.window, agg.plan.row_ttl_ms) {
                    agg.expiry.insert((g.ts.saturating_add(ttl), key.to_vec()));
                }
                agg.groups.insert(key.to_vec(), g);
            } else {
                restore_join(&mut self.root, store, key, v)?;
            }
        }
        Ok(())
    }
}

/// Keeps the windows a record may still be counted in.
fn accept_windows(windows: Vec<(i64, i64)>, grace: i64, stream_time: i64) -> Vec<(i64, i64)> {
    windows.into_iter().filter(|(_, end)| end.saturating_add(grace) > stream_time).collect()
}

/// Notes that a group changed: emits it now, or at the end of the round when caching.
fn touch(agg: &mut AggState, plan: &StatefulPlan, k: &[u8], cache: bool, out: &mut Vec<Emitted>) -> Result<(), String> {
    if cache {
        agg.touched.insert(k.to_vec());
        agg.removed.remove(k);
        return Ok(());
    }
    if let Some(g) = agg.groups.get_mut(k)
        && let Some(e) = result_of(plan, &agg.plan, g)?
    {
        g.emitted = !e.deleted;
        out.push(e);
    }
    Ok(())
}

/// The aggregate row of a group: group keys, aggregate results, WINDOWSTART, WINDOWEND.
fn aggregate_row(agg: &AggregatePlan, g: &Group) -> Row {
    let mut row = g.keys.clone();
    row.extend(agg.calls.iter().zip(&g.accs).map(|((call, _), acc)| call.result(acc)));
    let (ws, we) = g.window.map(|(s, e)| (Value::Bigint(s), Value::Bigint(e))).unwrap_or((Value::Null, Value::Null));
    row.push(ws);
    row.push(we);
    row
}

/// The output for a group: its row, a deletion when HAVING no longer holds for a row that was
/// emitted, or nothing.
fn result_of(plan: &StatefulPlan, agg: &AggregatePlan, g: &Group) -> Result<Option<Emitted>, String> {
    let row = aggregate_row(agg, g);
    if let Some(h) = &agg.having
        && !h.test(&row).map_err(|e| e.0)?
    {
        return Ok(g.emitted.then(|| deletion_of(plan, agg, g)));
    }
    let values: Row = plan.columns.iter().map(|(_, c)| c.eval(&row).map_err(|e| e.0)).collect::<Result<_, _>>()?;
    Ok(Some(Emitted { row: values, deleted: false, window: g.window, ts: g.ts }))
}

fn deletion_of(plan: &StatefulPlan, agg: &AggregatePlan, g: &Group) -> Emitted {
    let mut row = vec![Value::Null; plan.columns.len()];
    for (&pos, &group) in plan.key.iter().zip(&agg.key_groups) {
        row[pos] = g.keys.get(group).cloned().unwrap_or(Value::Null);
    }
    Emitted { row, deleted: true, window: g.window, ts: g.ts }
}

fn encode_group(agg: &AggregatePlan, g: &Group) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&g.rows.to_be_bytes());
    v.extend_from_slice(&g.ts.to_be_bytes());
    v.push(u8::from(g.emitted));
    match g.window {
        Some((s, e)) => {
            v.push(1);
            v.extend_from_slice(&s.to_be_bytes());
            v.extend_from_slice(&e.to_be_bytes());
        }
        None => v.push(0),
    }
    encode_row(&g.keys, &mut v);
    for ((call, _), acc) in agg.calls.iter().zip(&g.accs) {
        call.encode(acc, &mut v);
    }
    v
}

fn decode_group(agg: &AggregatePlan, bytes: &[u8]) -> Result<Group, String> {
    let mut c = Cursor(bytes);
    let rows = c.i64()?;
    let ts = c.i64()?;
    let emitted = c.u8()? == 1;
    let window = if c.u8()? == 1 { Some((c.i64()?, c.i64()?)) } else { None };
    let keys = c.row()?;
    let mut accs = Vec::with_capacity(agg.calls.len());
    for (call, _) in &agg.calls {
        accs.push(call.decode(&mut c.0).map_err(codec_err)?);
    }
    Ok(Group { keys, window, rows, ts, emitted, accs })
}

/// Pushes a change from input `input` up the join tree; changes out of the root are added to
/// `out`.
fn push(
    node: &mut OpNode,
    tables: &[Option<TableRows>],
    input: usize,
    change: Change,
    now: i64,
    out: &mut Vec<Change>,
    errors: &mut Vec<String>,
) {
    match node {
        OpNode::Source(i) => {
            if *i == input {
                out.push(change);
            }
        }
        OpNode::Join(j) => {
            if j.plan.right == input {
                if let Err(e) = j.on_right(change, tables, now, out) {
                    errors.push(e);
                }
                return;
            }
            let mut below = Vec::new();
            push(&mut j.left, tables, input, change, now, &mut below, errors);
            for c in below {
                if let Err(e) = j.on_left(c, tables, now, out) {
                    errors.push(e);
                }
            }
        }
    }
}

fn join_key(keys: &[crate::expr::Compiled], row: &Row) -> Result<Option<Vec<u8>>, String> {
    let values: Vec<Value> = keys.iter().map(|k| k.eval(row).map_err(|e| e.0)).collect::<Result<_, _>>()?;
    if values.iter().any(Value::is_null) {
        return Ok(None);
    }
    Ok(Some(key_of(&values)))
}

fn concat(l: &[Value], r: &[Value]) -> Row {
    let mut row = Vec::with_capacity(l.len() + r.len());
    row.extend_from_slice(l);
    row.extend_from_slice(r);
    row
}

impl JoinState {
    fn residual_ok(&self, row: &Row) -> Result<bool, String> {
        match &self.plan.residual {
            None => Ok(true),
            Some(r) => r.test(row).map_err(|e| e.0),
        }
    }

    /// Table-table: the joined row for a left row and a right row (either absent).
    fn table_row(&self, l: Option<&Row>, r: Option<&Row>) -> Result<Option<Row>, String> {
        let (lw, rw) = (self.plan.left_width, self.plan.right_width);
        let matched = match (l, r) {
            (Some(l), Some(r)) => {
                let row = concat(l, r);
                if self.residual_ok(&row)? { Some(row) } else { None }
            }
            _ => None,
        };
        if matched.is_some() {
            return Ok(matched);
        }
        Ok(match (self.plan.kind, l, r) {
            (JoinKind::Left | JoinKind::Full, Some(l), _) => Some(concat(l, &vec![Value::Null; rw])),
            (JoinKind::Right | JoinKind::Full, None, Some(r)) => Some(concat(&vec![Value::Null; lw], r)),
            (JoinKind::Right, Some(_), Some(r)) => Some(concat(&vec![Value::Null; lw], r)),
            _ => None,
        })
    }

    fn on_left(
        &mut self,
        c: Change,
        tables: &[Option<TableRows>],
        now: i64,
        out: &mut Vec<Change>,
    ) -> Result<(), String> {
        let right_rows = tables.get(self.plan.right).and_then(Option::as_ref);
        match self.plan.mode {
            JoinMode::StreamTable => {
                let Some(row) = c.new else { return Ok(()) };
                let found = match join_key(&self.plan.left_keys, &row)? {
                    Some(k) => right_rows.and_then(|t| t.rows.get(&k)),
                    None => None,
                };
                let joined = match found {
                    Some(r) => {
                        let j = concat(&row, r);
                        if self.residual_ok(&j)? { Some(j) } else { None }
                    }
                    None => None,
                };
                let joined = match (joined, self.plan.kind) {
                    (Some(j), _) => Some(j),
                    (None, JoinKind::Left) => Some(concat(&row, &vec![Value::Null; self.plan.right_width])),
                    (None, _) => None,
                };
                if let Some(j) = joined {
                    out.push(Change { key: Vec::new(), old: None, new: Some(j), ts: c.ts });
                }
                Ok(())
            }
            JoinMode::TablePrimaryKey | JoinMode::TableForeignKey => {
                let old_jk = match &c.old {
                    Some(o) => join_key(&self.plan.left_keys, o)?,
                    None => None,
                };
                let new_jk = match &c.new {
                    Some(n) => join_key(&self.plan.left_keys, n)?,
                    None => None,
                };
                let lookup = |jk: &Option<Vec<u8>>| jk.as_ref().and_then(|k| right_rows.and_then(|t| t.rows.get(k)));
                let old_out = match &c.old {
                    Some(o) => self.table_row(Some(o), lookup(&old_jk))?,
                    None if self.plan.mode == JoinMode::TablePrimaryKey => {
                        // A right-only row for this key may have been emitted (RIGHT, FULL).
                        self.table_row(None, right_rows.and_then(|t| t.rows.get(&c.key)))?
                    }
                    None => None,
                };
                let new_out = match &c.new {
                    Some(n) => self.table_row(Some(n), lookup(&new_jk))?,
                    None if self.plan.mode == JoinMode::TablePrimaryKey => {
                        self.table_row(None, right_rows.and_then(|t| t.rows.get(&c.key)))?
                    }
                    None => None,
                };
                if let Some(k) = &old_jk
                    && let Some(set) = self.by_join_key.get_mut(k)
                {
                    set.remove(&c.key);
                    if set.is_empty() {
                        self.by_join_key.remove(k);
                    }
                }
                if let Some(k) = &new_jk {
                    self.by_join_key.entry(k.clone()).or_default().insert(c.key.clone());
                }
                match &c.new {
                    Some(n) => self.left_rows.insert(c.key.clone(), n.clone()),
                    None => self.left_rows.remove(&c.key),
                };
                self.left_dirty.insert(c.key.clone());
                if old_out.is_some() || new_out.is_some() {
                    out.push(Change { key: c.key, old: old_out, new: new_out, ts: c.ts });
                }
                Ok(())
            }
            JoinMode::StreamStream { before_ms, after_ms, grace_ms } => {
                let Some(row) = c.new else { return Ok(()) };
                self.stream_side(0, row, c.ts, before_ms, after_ms, grace_ms, now, out)
            }
        }
    }

    fn on_right(
        &mut self,
        c: Change,
        tables: &[Option<TableRows>],
        now: i64,
        out: &mut Vec<Change>,
    ) -> Result<(), String> {
        match self.plan.mode {
            // The table source keeps its rows; a table update emits nothing.
            JoinMode::StreamTable => Ok(()),
            JoinMode::TablePrimaryKey | JoinMode::TableForeignKey => {
                let lefts: Vec<Vec<u8>> =
                    self.by_join_key.get(&c.key).map(|s| s.iter().cloned().collect()).unwrap_or_default();
                let _ = tables;
                if lefts.is_empty() {
                    if self.plan.mode == JoinMode::TablePrimaryKey
                        && matches!(self.plan.kind, JoinKind::Right | JoinKind::Full)
                    {
                        let old_out = self.table_row(None, c.old.as_ref())?;
                        let new_out = self.table_row(None, c.new.as_ref())?;
                        if old_out.is_some() || new_out.is_some() {
                            out.push(Change { key: c.key, old: old_out, new: new_out, ts: c.ts });
                        }
                    }
                    return Ok(());
                }
                for lk in lefts {
                    let l = self.left_rows.get(&lk);
                    let old_out = self.table_row(l, c.old.as_ref())?;
                    let new_out = self.table_row(l, c.new.as_ref())?;
                    if old_out != new_out {
                        out.push(Change { key: lk, old: old_out, new: new_out, ts: c.ts });
                    }
                }
                Ok(())
            }
            JoinMode::StreamStream { before_ms, after_ms, grace_ms } => {
                let Some(row) = c.new else { return Ok(()) };
                // From the right side the window is mirrored.
                self.stream_side(1, row, c.ts, after_ms, before_ms, grace_ms, now, out)
            }
        }
    }

    /// A stream-stream record on `side` (0 left, 1 right): joins it with the other side's
    /// buffered records in [ts - before, ts + after], and buffers it.
    #[allow(clippy::too_many_arguments)]
    fn stream_side(
        &mut self,
        side: usize,
        row: Row,
        ts: i64,
        before: i64,
        after: i64,
        grace: Option<i64>,
        now: i64,
        out: &mut Vec<Change>,
    ) -> Result<(), String> {
        let keys = if side == 0 { &self.plan.left_keys } else { &self.plan.right_keys };
        let outer_here = matches!(
            (self.plan.kind, side),
            (JoinKind::Left | JoinKind::Full, 0) | (JoinKind::Right | JoinKind::Full, 1)
        );
        let (lw, rw) = (self.plan.left_width, self.plan.right_width);
        let pair = |mine: &Row, theirs: &Row| if side == 0 { concat(mine, theirs) } else { concat(theirs, mine) };
        let with_nulls = |mine: &Row| {
            if side == 0 { concat(mine, &vec![Value::Null; rw]) } else { concat(&vec![Value::Null; lw], mine) }
        };
        let grace_or_default = grace.unwrap_or(crate::stateful::DEFAULT_GRACE_MS as i64);
        // Late: its window closed before it arrived.
        if ts.saturating_add(after).saturating_add(grace_or_default) < now {
            return Ok(());
        }
        let Some(jk) = join_key(keys, &row)? else {
            if outer_here {
                out.push(Change { key: Vec::new(), old: None, new: Some(with_nulls(&row)), ts });
            }
            return Ok(());
        };
        let other = 1 - side;
        let lo = (jk.clone(), ts.saturating_sub(before), 0u64);
        let hi = (jk.clone(), ts.saturating_add(after), u64::MAX);
        let mut matched = false;
        let mut newly_matched = Vec::new();
        for ((k, t, s), b) in self.buffers[other].range(lo..=hi) {
            let joined = pair(&row, &b.row);
            if !self.residual_ok(&joined)? {
                continue;
            }
            matched = true;
            out.push(Change { key: Vec::new(), old: None, new: Some(joined), ts: ts.max(*t) });
            if !b.matched {
                newly_matched.push((k.clone(), *t, *s));
            }
        }
        for k in newly_matched {
            if let Some(b) = self.buffers[other].get_mut(&k) {
                b.matched = true;
                self.buffer_dirty.insert((other as u8, k.0, k.1, k.2));
            }
        }
        // Without a grace period (ksqlDB's older semantics) an unmatched outer row is emitted
        // at once; with one, when the window closes unmatched.
        let outer_done = if outer_here && !matched && grace.is_none() {
            out.push(Change { key: Vec::new(), old: None, new: Some(with_nulls(&row)), ts });
            true
        } else {
            !outer_here || matched
        };
        let seq = self.seq;
        self.seq += 1;
        if !outer_done {
            self.outer_pending.insert((
                ts.saturating_add(after).saturating_add(grace_or_default),
                side as u8,
                jk.clone(),
                ts,
                seq,
            ));
        }
        self.by_time.insert((ts, side as u8, jk.clone(), seq));
        self.buffer_dirty.insert((side as u8, jk.clone(), ts, seq));
        self.buffers[side].insert((jk, ts, seq), Buffered { row, matched, outer_done });
        Ok(())
    }

    /// Emits unmatched outer rows whose window closed, and drops buffered rows no record can
    /// match any more.
    fn expire(&mut self, now: i64, plan_out: &mut Vec<Change>) {
        let JoinMode::StreamStream { before_ms, after_ms, grace_ms } = self.plan.mode else { return };
        let grace = grace_ms.unwrap_or(crate::stateful::DEFAULT_GRACE_MS as i64);
        let span = before_ms.saturating_add(after_ms).saturating_add(grace);
        // Unmatched outer rows whose window closed.
        while let Some((at, ..)) = self.outer_pending.first() {
            if *at >= now {
                break;
            }
            let Some((_, side, jk, t, seq)) = self.outer_pending.pop_first() else { break };
            let (lw, rw) = (self.plan.left_width, self.plan.right_width);
            if let Some(b) = self.buffers[side as usize].get_mut(&(jk.clone(), t, seq))
                && !b.outer_done
                && !b.matched
            {
                b.outer_done = true;
                let row = if side == 0 {
                    concat(&b.row, &vec![Value::Null; rw])
                } else {
                    concat(&vec![Value::Null; lw], &b.row)
                };
                plan_out.push(Change { key: Vec::new(), old: None, new: Some(row), ts: t });
                self.buffer_dirty.insert((side, jk, t, seq));
            }
        }
        while let Some((t, ..)) = self.by_time.first() {
            if t.saturating_add(span) >= now {
                break;
            }
            let Some((t, side, jk, seq)) = self.by_time.pop_first() else { break };
            // An outer row never matched and never emitted (no grace given, so not deferred).
            self.buffers[side as usize].remove(&(jk.clone(), t, seq));
            self.buffer_dirty.insert((side, jk, t, seq));
        }
    }
}

/// Expires join buffers bottom-up; outer rows a lower join emits flow through the joins above.
fn expire_tree(
    node: &mut OpNode,
    tables: &[Option<TableRows>],
    now: i64,
    out: &mut Vec<Change>,
    errors: &mut Vec<String>,
) {
    let OpNode::Join(j) = node else { return };
    let mut below = Vec::new();
    expire_tree(&mut j.left, tables, now, &mut below, errors);
    for c in below {
        if let Err(e) = j.on_left(c, tables, now, out) {
            errors.push(e);
        }
    }
    j.expire(now, out);
}

fn buffer_key(store: u8, side: u8, jk: &[u8], ts: i64, seq: u64) -> Vec<u8> {
    let mut key = vec![store, b'b', side];
    key.extend_from_slice(&(jk.len() as u32).to_be_bytes());
    key.extend_from_slice(jk);
    key.extend_from_slice(&time_bytes(ts));
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn encode_buffered(b: &Buffered) -> Vec<u8> {
    let mut v = vec![u8::from(b.matched), u8::from(b.outer_done)];
    encode_row(&b.row, &mut v);
    v
}

fn join_changes(node: &mut OpNode, out: &mut Entries) {
    let OpNode::Join(j) = node else { return };
    join_changes(&mut j.left, out);
    for k in std::mem::take(&mut j.left_dirty) {
        let mut key = vec![j.store, b'l'];
        key.extend_from_slice(&k);
        let value = j.left_rows.get(&k).map(|row| {
            let mut v = Vec::new();
            encode_row(row, &mut v);
            v
        });
        out.push((key, value));
    }
    for (side, jk, ts, seq) in std::mem::take(&mut j.buffer_dirty) {
        let key = buffer_key(j.store, side, &jk, ts, seq);
        let value = j.buffers[side as usize].get(&(jk, ts, seq)).map(encode_buffered);
        out.push((key, value));
    }
}

fn dump_joins(node: &OpNode, put: &mut dyn FnMut(&[u8], &[u8])) {
    let OpNode::Join(j) = node else { return };
    dump_joins(&j.left, put);
    for (k, row) in &j.left_rows {
        let mut key = vec![j.store, b'l'];
        key.extend_from_slice(k);
        let mut v = Vec::new();
        encode_row(row, &mut v);
        put(&key, &v);
    }
    for (side, buffer) in j.buffers.iter().enumerate() {
        for ((jk, ts, seq), b) in buffer {
            put(&buffer_key(j.store, side as u8, jk, *ts, *seq), &encode_buffered(b));
        }
    }
}

fn restore_join(node: &mut OpNode, store: u8, key: &[u8], value: &[u8]) -> Result<(), String> {
    let OpNode::Join(j) = node else { return Ok(()) };
    if j.store != store {
        return restore_join(&mut j.left, store, key, value);
    }
    match key.split_first() {
        Some((b'l', lk)) => {
            let row = Cursor(value).row()?;
            if let Some(jk) = join_key(&j.plan.left_keys, &row)? {
                j.by_join_key.entry(jk).or_default().insert(lk.to_vec());
            }
            j.left_rows.insert(lk.to_vec(), row);
        }
        Some((b'b', rest)) => {
            let side = *rest.first().ok_or("truncated join entry")?;
            let len = u32::from_be_bytes(rest.get(1..5).ok_or("truncated join entry")?.try_into().map_err(|_| "bad")?)
                as usize;
            let jk = rest.get(5..5 + len).ok_or("truncated join entry")?.to_vec();
            let tail = rest.get(5 + len..).ok_or("truncated join entry")?;
            let ts = time_from(tail).ok_or("truncated join entry")?;
            let seq = u64::from_be_bytes(tail.get(8..16).ok_or("truncated join entry")?.try_into().map_err(|_| "bad")?);
            let mut c = Cursor(value);
            let matched = c.u8()? == 1;
            let outer_done = c.u8()? == 1;
            let row = c.row()?;
            j.seq = j.seq.max(seq + 1);
            if let JoinMode::StreamStream { before_ms, after_ms, grace_ms: Some(grace) } = j.plan.mode
                && !outer_done
            {
                let close = if side == 0 { after_ms } else { before_ms };
                j.outer_pending.insert((ts.saturating_add(close).saturating_add(grace), side, jk.clone(), ts, seq));
            }
            j.by_time.insert((ts, side, jk.clone(), seq));
            j.buffers[(side & 1) as usize].insert((jk, ts, seq), Buffered { row, matched, outer_done });
        }
        _ => return Err("unknown join state entry".into()),
    }
    Ok(())
}
