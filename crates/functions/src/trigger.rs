//! Topic and table triggers: one consumer thread per function reads every partition of the
//! trigger topic (for a table trigger, the topic backing the SQL table, looked up in the
//! engine when the trigger starts and again every [`TABLE_CHECK_INTERVAL_MS`]: a dropped
//! table pauses the trigger until it exists again, and one created again on another topic
//! is read from the trigger's start position) from its committed positions and hands each
//! event to a lane (a worker thread) chosen by its key, so events of one key run in order
//! while different keys run on up to `concurrency` lanes at once. A lane invokes batches of
//! up to `batch_size` events; a position is committed only once every event before it is
//! done (at least once).
//!
//! A failed invocation is retried with exponential backoff; when the retries run out, the
//! batch's events are retried one by one, so a poison event does not take its neighbours
//! along, and those that still fail are written to the dead-letter topic with headers
//! saying where they came from and why they failed. The partition goes on.
//!
//! Timer triggers ([`crate::timer`]) run their fires through the same [`process`]; HTTP
//! triggers have no thread (the service invokes them per request).

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use runnel_records::{RecordHeader, partition_for_key};
use runnel_sql::ast::SourceKind;
use runnel_sql::eventlog::{LogRecord, OutRecord};
use runnel_sql::{Engine, EventLog};

use crate::bindings::{Event, Header, Level, OutputEvent};
use crate::engine_host::{EngineHost, now_ms};
use crate::error::InvokeError;
use crate::handler::Handler;
use crate::limits::*;
use crate::metrics::Metrics;
use crate::registry::{Position, PositionStore, trigger_key};
use crate::spec::{FunctionSpec, StartPosition, Trigger};
use crate::timer::{Clock, Schedule, Timer};

/// Header of a dead letter: the function that failed on it.
pub const DLQ_HEADER_FUNCTION: &str = "runnel.dlq.function";
/// Header of a dead letter: the topic the event was read from.
pub const DLQ_HEADER_TOPIC: &str = "runnel.dlq.topic";
/// Header of a dead letter: the partition the event was read from (decimal).
pub const DLQ_HEADER_PARTITION: &str = "runnel.dlq.partition";
/// Header of a dead letter: the event's offset (decimal).
pub const DLQ_HEADER_OFFSET: &str = "runnel.dlq.offset";
/// Header of a dead letter: the last error.
pub const DLQ_HEADER_ERROR: &str = "runnel.dlq.error";
/// Header of a dead letter: invocations the event was part of (decimal).
pub const DLQ_HEADER_ATTEMPTS: &str = "runnel.dlq.attempts";
/// Prefix of the headers the service adds to a dead letter (removed again on replay).
pub const DLQ_HEADER_PREFIX: &str = "runnel.dlq.";

/// A function as the lanes see it: swapped whole between batches on a new deploy.
pub(crate) struct Deployed {
    pub spec: FunctionSpec,
    /// `Err`: the stored component could not be loaded at start (the reason).
    pub function: Result<Arc<Handler>, String>,
}

/// Everything about one function that outlives its versions.
pub(crate) struct FunctionState {
    pub name: String,
    pub host: Arc<EngineHost>,
    pub metrics: Metrics,
    pub deployed: RwLock<Arc<Deployed>>,
}

impl FunctionState {
    pub fn current(&self) -> Arc<Deployed> {
        self.deployed.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the service shares with every trigger.
pub(crate) struct Shared {
    pub log: Arc<dyn EventLog>,
    pub positions: PositionStore,
    pub sync_outputs: bool,
    pub auto_create_output_topics: bool,
    /// Spreads null-key outputs and dead letters over partitions.
    pub round_robin: AtomicU32,
    /// The time timer triggers fire by.
    pub clock: Clock,
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    #[error("output topic {0} does not exist (create it, then replay the dead letters)")]
    UnknownTopic(String),
    #[error("output topic {0} is internal: functions may not write to it")]
    InternalTopic(String),
    #[error("cannot write outputs to topic {topic}: {message}")]
    Append { topic: String, message: String },
    #[error("function is not loaded: {0}")]
    NotLoaded(String),
}

enum Attempted {
    Ok,
    Failed { error: String, attempts: u32 },
    Stopped,
}

/// How a batch ended.
pub(crate) enum Processed {
    /// Every event is done: handled, or written to the dead-letter topic.
    Done { dead_lettered: usize },
    /// The trigger is stopping; the batch is not done and will be read again.
    Stopped,
}

/// Runs a batch through the current version of the function: invoke with retries, write
/// the outputs, and on failure retry each event alone and dead-letter those that fail.
pub(crate) fn process(shared: &Shared, state: &FunctionState, events: &[Event], stop: &Stop) -> Processed {
    let deployed = state.current();
    let spec = &deployed.spec;
    let (error, attempts) = match attempt(shared, state, &deployed, events, stop) {
        Attempted::Ok => {
            Metrics::add(&state.metrics.events, events.len() as u64);
            return Processed::Done { dead_lettered: 0 };
        }
        Attempted::Stopped => return Processed::Stopped,
        Attempted::Failed { error, attempts } => (error, attempts),
    };
    let mut dead_lettered = 0;
    if let [event] = events {
        if !dead_letter(shared, state, spec, event, &error, attempts, stop) {
            return Processed::Stopped;
        }
        dead_lettered += 1;
    } else {
        state.host.platform_log(
            Level::Warn,
            format!(
                "a batch of {} events failed {attempts} times: {error}; retrying its events one by one",
                events.len()
            ),
        );
        for event in events {
            match attempt(shared, state, &deployed, std::slice::from_ref(event), stop) {
                Attempted::Ok => {}
                Attempted::Stopped => return Processed::Stopped,
                Attempted::Failed { error, attempts: alone } => {
                    if !dead_letter(shared, state, spec, event, &error, attempts + alone, stop) {
                        return Processed::Stopped;
                    }
                    dead_lettered += 1;
                }
            }
        }
    }
    Metrics::add(&state.metrics.events, events.len() as u64);
    Processed::Done { dead_lettered }
}

/// Invokes `events` and writes the outputs, retrying with exponential backoff.
fn attempt(shared: &Shared, state: &FunctionState, deployed: &Deployed, events: &[Event], stop: &Stop) -> Attempted {
    let spec = &deployed.spec;
    let mut backoff_ms = spec.retry_backoff_initial_ms;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = match &deployed.function {
            Ok(function) => {
                let started = Instant::now();
                let result = function.invoke(events);
                state.metrics.invoked(started.elapsed());
                result.map_err(AttemptError::from).and_then(|outputs| write_outputs(shared, &outputs))
            }
            Err(reason) => Err(AttemptError::NotLoaded(reason.clone())),
        };
        let error = match result {
            Ok(written) => {
                Metrics::add(&state.metrics.outputs, written);
                return Attempted::Ok;
            }
            Err(e) => e,
        };
        Metrics::add(&state.metrics.errors, 1);
        if attempts > spec.retries {
            return Attempted::Failed { error: error.to_string(), attempts };
        }
        state.host.platform_log(
            Level::Warn,
            format!(
                "invocation of {} events failed (attempt {attempts} of {}): {error}; retrying in {backoff_ms} ms",
                events.len(),
                spec.retries + 1
            ),
        );
        Metrics::add(&state.metrics.retries, 1);
        if stop.sleep(Duration::from_millis(backoff_ms)) {
            return Attempted::Stopped;
        }
        backoff_ms = backoff_ms.saturating_mul(2).min(spec.retry_backoff_max_ms);
    }
}

/// Appends outputs to their topics, each keyed event to the partition Kafka's default
/// partitioner picks, so one key's outputs stay in order. Returns how many were written.
fn write_outputs(shared: &Shared, outputs: &[OutputEvent]) -> Result<u64, AttemptError> {
    let at = now_ms();
    // (topic, partition count) seen in this batch, and records by (topic, partition).
    let mut topics: Vec<(&str, u32)> = Vec::new();
    let mut groups: Vec<(&str, u32, Vec<OutRecord>)> = Vec::new();
    for output in outputs {
        let topic = output.topic.as_str();
        let partitions = match topics.iter().find(|(t, _)| *t == topic) {
            Some((_, n)) => *n,
            None => {
                let n = output_partitions(shared, topic)?;
                topics.push((topic, n));
                n
            }
        };
        let partition = partition_for(output.key.as_deref(), partitions, &shared.round_robin);
        let record = OutRecord {
            key: output.key.clone().map(Bytes::from),
            value: output.value.clone().map(Bytes::from),
            headers: output.headers.iter().map(record_header).collect(),
            timestamp: at,
        };
        match groups.iter_mut().find(|(t, p, _)| *t == topic && *p == partition) {
            Some((_, _, records)) => records.push(record),
            None => groups.push((topic, partition, vec![record])),
        }
    }
    for (topic, partition, records) in groups {
        shared
            .log
            .append(topic, partition, &records, shared.sync_outputs)
            .map_err(|e| AttemptError::Append { topic: topic.to_string(), message: e.0 })?;
    }
    Ok(outputs.len() as u64)
}

/// [`write_outputs`] for a direct invocation.
pub(crate) fn write_outputs_now(shared: &Shared, outputs: &[OutputEvent]) -> Result<u64, String> {
    write_outputs(shared, outputs).map_err(|e| e.to_string())
}

fn output_partitions(shared: &Shared, topic: &str) -> Result<u32, AttemptError> {
    if topic.starts_with("__") {
        return Err(AttemptError::InternalTopic(topic.to_string()));
    }
    if let Some(n) = shared.log.partitions(topic) {
        return Ok(n);
    }
    if !shared.auto_create_output_topics {
        return Err(AttemptError::UnknownTopic(topic.to_string()));
    }
    shared
        .log
        .create_topic(topic, AUTO_CREATED_TOPIC_PARTITIONS, false)
        .map_err(|e| AttemptError::Append { topic: topic.to_string(), message: e.0 })?;
    Ok(AUTO_CREATED_TOPIC_PARTITIONS)
}

fn record_header(header: &Header) -> RecordHeader {
    RecordHeader { key: header.key.clone(), value: Some(Bytes::from(header.value.clone())) }
}

/// Writes one event to the function's dead-letter topic (created if missing), trying
/// again until it succeeds or the trigger stops; returns false if it stopped.
fn dead_letter(
    shared: &Shared,
    state: &FunctionState,
    spec: &FunctionSpec,
    event: &Event,
    error: &str,
    attempts: u32,
    stop: &Stop,
) -> bool {
    let topic = spec.dead_letter_topic.as_str();
    let mut headers: Vec<RecordHeader> = event.headers.iter().map(record_header).collect();
    let mut add = |key: &str, value: String| {
        headers.push(RecordHeader { key: key.to_string(), value: Some(Bytes::from(value.into_bytes())) })
    };
    add(DLQ_HEADER_FUNCTION, state.name.clone());
    add(DLQ_HEADER_TOPIC, event.topic.clone());
    add(DLQ_HEADER_PARTITION, event.partition.to_string());
    add(DLQ_HEADER_OFFSET, event.offset.to_string());
    add(DLQ_HEADER_ERROR, error.to_string());
    add(DLQ_HEADER_ATTEMPTS, attempts.to_string());
    let record = OutRecord {
        key: event.key.clone().map(Bytes::from),
        value: event.value.clone().map(Bytes::from),
        headers,
        timestamp: event.timestamp_ms,
    };
    loop {
        let written = (|| {
            let partitions = match shared.log.partitions(topic) {
                Some(n) => n,
                None => {
                    shared.log.create_topic(topic, DEAD_LETTER_PARTITIONS, false)?;
                    DEAD_LETTER_PARTITIONS
                }
            };
            let partition = partition_for(event.key.as_deref(), partitions, &shared.round_robin);
            shared.log.append(topic, partition, std::slice::from_ref(&record), true)
        })();
        match written {
            Ok(_) => {
                Metrics::add(&state.metrics.dead_letters, 1);
                state.host.platform_log(
                    Level::Error,
                    format!(
                        "event {}/{}@{} written to dead-letter topic {topic} after {attempts} attempts: {error}",
                        event.topic, event.partition, event.offset
                    ),
                );
                return true;
            }
            Err(e) => {
                state.host.platform_log(
                    Level::Error,
                    format!("cannot write a dead letter to {topic}: {e}; trying again in {DEAD_LETTER_RETRY_MS} ms"),
                );
                if stop.sleep(Duration::from_millis(DEAD_LETTER_RETRY_MS)) {
                    return false;
                }
            }
        }
    }
}

/// An event from a record read from `topic`.
pub(crate) fn event_of(topic: &str, record: LogRecord) -> Event {
    Event {
        topic: topic.to_string(),
        partition: i32::try_from(record.partition).unwrap_or(i32::MAX),
        offset: record.offset,
        timestamp_ms: record.timestamp,
        key: record.key.map(|k| k.to_vec()),
        value: record.value.map(|v| v.to_vec()),
        headers: record
            .headers
            .into_iter()
            .map(|h| Header { key: h.key, value: h.value.map(|v| v.to_vec()).unwrap_or_default() })
            .collect(),
    }
}

/// Kafka's default partitioner for keyed records (murmur2, from `runnel-records`, so
/// outputs land where a Kafka producer would put them); round robin for null keys.
fn partition_for(key: Option<&[u8]>, partitions: u32, round_robin: &AtomicU32) -> u32 {
    let partitions = partitions.max(1);
    match key {
        Some(key) => partition_for_key(key, partitions),
        None => round_robin.fetch_add(1, Ordering::Relaxed) % partitions,
    }
}

/// The topic backing SQL table `table` (looked up as written, then upper-cased as an
/// unquoted SQL name is), or why there is none.
pub(crate) fn table_topic(engine: &Engine, table: &str) -> Result<String, String> {
    let source = engine.source(table).or_else(|| engine.source(&table.to_ascii_uppercase()));
    match source {
        None => Err(format!("table {table} does not exist")),
        Some(source) if source.kind != SourceKind::Table => {
            Err(format!("{table} is a stream, not a table: use a topic trigger on {}", source.topic))
        }
        Some(source) => Ok(source.topic.clone()),
    }
}

/// The lane of an event: by its key, so one key always runs on one lane; null keys by
/// partition, so they keep their partition's order.
fn lane_for(event: &Event, lanes: usize) -> usize {
    let mut hasher = std::hash::DefaultHasher::new();
    match &event.key {
        Some(key) => key.hash(&mut hasher),
        None => event.partition.hash(&mut hasher),
    }
    (hasher.finish() % lanes.max(1) as u64) as usize
}

/// A stop signal that sleeping threads wake up for.
#[derive(Default)]
pub(crate) struct Stop {
    stopped: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Stop {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.wake.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration` or until stopped; returns whether it is stopped.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.is_stopped() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            guard = self.wake.wait_timeout(guard, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        self.is_stopped()
    }
}

/// Offsets handed to lanes and not yet done, per partition.
#[derive(Default)]
struct PartitionProgress {
    in_flight: BTreeSet<i64>,
    /// Where the consumer reads next: everything before it was handed out.
    read_to: i64,
}

impl PartitionProgress {
    /// The position to commit: the first offset not done.
    fn committable(&self) -> i64 {
        self.in_flight.first().copied().unwrap_or(self.read_to)
    }
}

type Progress = Arc<Mutex<Vec<PartitionProgress>>>;

/// A running topic, table or timer trigger; stopping it (or dropping it) commits what is
/// done and joins its threads.
pub(crate) struct TriggerHandle {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl TriggerHandle {
    /// Starts the trigger of `spec`, if it has one with a thread (topic, table or timer).
    pub fn start(
        shared: Arc<Shared>,
        state: Arc<FunctionState>,
        spec: &FunctionSpec,
        engine: &Arc<Engine>,
    ) -> std::io::Result<Option<Self>> {
        let stop = Arc::new(Stop::default());
        let (source, start) = match &spec.trigger {
            Trigger::None | Trigger::Http => return Ok(None),
            Trigger::Cron { expression } => {
                let schedule = match Schedule::parse(expression) {
                    Ok(schedule) => schedule,
                    Err(reason) => {
                        // Checked at deploy; only a spec stored by another version gets here.
                        state.host.platform_log(Level::Error, format!("timer not started: {reason}"));
                        return Ok(None);
                    }
                };
                let timer = Timer { shared, state, schedule, expression: expression.clone(), stop: stop.clone() };
                let thread =
                    std::thread::Builder::new().name(format!("fn-{}-timer", spec.name)).spawn(move || timer.run())?;
                return Ok(Some(Self { stop, thread: Some(thread) }));
            }
            Trigger::Topic { topic, start } => (Source::Topic(topic.clone()), *start),
            Trigger::Table { table, start } => (Source::Table { table: table.clone(), engine: engine.clone() }, *start),
        };
        let consumer = Consumer {
            shared,
            state,
            source,
            topic: String::new(),
            start,
            concurrency: spec.concurrency.max(1) as usize,
            batch_size: spec.batch_size.max(1) as usize,
            batch_window: Duration::from_millis(spec.batch_window_ms),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new().name(format!("fn-{}", spec.name)).spawn(move || consumer.run())?;
        Ok(Some(Self { stop, thread: Some(thread) }))
    }

    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for TriggerHandle {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a consumer reads.
enum Source {
    Topic(String),
    /// The topic backing a SQL table, looked up when the consumer starts and whenever the
    /// table changes.
    Table {
        table: String,
        engine: Arc<Engine>,
    },
}

/// How [`Consumer::consume`] ended.
enum Consumed {
    /// The trigger is stopping, or no lane could start.
    Stopped,
    /// The table was dropped or is backed by another topic: look it up again.
    TableChanged,
}

struct Consumer {
    shared: Arc<Shared>,
    state: Arc<FunctionState>,
    source: Source,
    /// The topic read: the trigger's, or the table's once looked up.
    topic: String,
    start: StartPosition,
    concurrency: usize,
    batch_size: usize,
    batch_window: Duration,
    stop: Arc<Stop>,
}

impl Consumer {
    /// Looks up the topic to read and consumes it until the trigger stops; a table trigger
    /// whose table was dropped, or now has another topic, goes back to the lookup.
    fn run(mut self) {
        while self.resolve() {
            match self.consume() {
                Consumed::Stopped => return,
                Consumed::TableChanged => {}
            }
        }
    }

    /// Sets the topic to read (for a table trigger, once the table exists) and waits until
    /// the topic exists; false if the trigger stopped first.
    fn resolve(&mut self) -> bool {
        let poll = Duration::from_millis(TRIGGER_POLL_WAIT_MS);
        match &self.source {
            Source::Topic(topic) => self.topic = topic.clone(),
            Source::Table { table, engine } => {
                let mut last_error = String::new();
                loop {
                    match table_topic(engine, table) {
                        Ok(topic) => {
                            if !last_error.is_empty() {
                                self.state.host.platform_log(Level::Info, format!("table {table} exists again"));
                            }
                            self.topic = topic;
                            break;
                        }
                        Err(reason) => {
                            if reason != last_error {
                                self.state.host.platform_log(
                                    Level::Error,
                                    format!(
                                        "table trigger cannot start: {reason}; \
                                         looking again every {TABLE_RESOLVE_RETRY_MS} ms"
                                    ),
                                );
                                last_error = reason;
                            }
                            if self.stop.sleep(Duration::from_millis(TABLE_RESOLVE_RETRY_MS)) {
                                return false;
                            }
                        }
                    }
                }
            }
        }
        let mut waiting_logged = false;
        while self.shared.log.partitions(&self.topic).is_none() {
            if !waiting_logged {
                self.state.host.platform_log(
                    Level::Warn,
                    format!("trigger topic {} does not exist yet; waiting for it", self.topic),
                );
                waiting_logged = true;
            }
            if self.stop.sleep(poll) {
                return false;
            }
        }
        true
    }

    /// Reads the topic from the committed positions and hands its events to the lanes until
    /// the trigger stops or, for a table trigger, the table changes (looked up again every
    /// [`TABLE_CHECK_INTERVAL_MS`], not per read); then lets the lanes finish the events
    /// handed out and commits.
    fn consume(&self) -> Consumed {
        let poll = Duration::from_millis(TRIGGER_POLL_WAIT_MS);
        let progress: Progress = Arc::default();
        // Next offset to read, and the last committed position (-1: none yet), by partition.
        let mut positions: Vec<i64> = Vec::new();
        let mut committed: Vec<i64> = Vec::new();
        self.add_partitions(&progress, &mut positions, &mut committed);

        let mut senders: Vec<SyncSender<Event>> = Vec::new();
        let mut lanes: Vec<JoinHandle<()>> = Vec::new();
        for lane in 0..self.concurrency {
            let (tx, rx) = sync_channel(LANE_QUEUE_EVENTS_MAX);
            let worker = Lane {
                shared: self.shared.clone(),
                state: self.state.clone(),
                rx,
                progress: progress.clone(),
                stop: self.stop.clone(),
                batch_size: self.batch_size,
                batch_window: self.batch_window,
            };
            match std::thread::Builder::new().name(format!("fn-{}-{lane}", self.state.name)).spawn(move || worker.run())
            {
                Ok(handle) => {
                    senders.push(tx);
                    lanes.push(handle);
                }
                Err(e) => {
                    self.state.host.platform_log(Level::Error, format!("cannot start a lane thread: {e}"));
                    break;
                }
            }
        }
        let mut last_read_error = String::new();
        let mut last_commit = Instant::now();
        let mut last_table_check = Instant::now();
        let mut ended = Consumed::Stopped;
        self.commit(&progress, &mut committed);
        'consume: while !senders.is_empty() && !self.stop.is_stopped() {
            let mut any = false;
            for (partition, position) in positions.iter_mut().enumerate() {
                let batch = match self.shared.log.read(&self.topic, partition as u32, *position, TRIGGER_READ_BYTES_MAX)
                {
                    Ok(batch) => batch,
                    Err(e) => {
                        if e.0 != last_read_error {
                            self.state.host.platform_log(Level::Warn, format!("cannot read {}: {e}", self.topic));
                            last_read_error = e.0;
                        }
                        continue;
                    }
                };
                if batch.next_offset <= *position {
                    continue;
                }
                any |= !batch.records.is_empty();
                {
                    let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
                    let p = &mut progress[partition];
                    p.in_flight.extend(batch.records.iter().map(|r| r.offset));
                    p.read_to = batch.next_offset;
                }
                *position = batch.next_offset;
                for record in batch.records {
                    let event = event_of(&self.topic, record);
                    let lane = lane_for(&event, senders.len());
                    // Blocks while the lane is full (backpressure); fails once it stopped.
                    if senders[lane].send(event).is_err() {
                        break 'consume;
                    }
                }
                if self.stop.is_stopped() {
                    break 'consume;
                }
            }
            if last_commit.elapsed() >= Duration::from_millis(COMMIT_INTERVAL_MS) {
                self.commit(&progress, &mut committed);
                last_commit = Instant::now();
            }
            if last_table_check.elapsed() >= Duration::from_millis(TABLE_CHECK_INTERVAL_MS) {
                last_table_check = Instant::now();
                if self.table_changed() {
                    ended = Consumed::TableChanged;
                    break;
                }
            }
            if !any {
                let waits: Vec<(u32, i64)> = positions.iter().enumerate().map(|(p, o)| (p as u32, *o)).collect();
                self.shared.log.wait_any(&self.topic, &waits, poll);
                self.add_partitions(&progress, &mut positions, &mut committed);
            }
        }
        // Lanes finish the events queued for them, then see their queue closed.
        drop(senders);
        for lane in lanes {
            let _ = lane.join();
        }
        self.commit(&progress, &mut committed);
        ended
    }

    /// Whether a table trigger's table was dropped or is now backed by another topic than
    /// the one read (and says which in the platform log); always false for a topic trigger.
    fn table_changed(&self) -> bool {
        let Source::Table { table, engine } = &self.source else {
            return false;
        };
        let message = match table_topic(engine, table) {
            Ok(topic) if topic == self.topic => return false,
            Ok(topic) => {
                format!("table {table} is now backed by topic {topic}, not {}; the trigger follows it", self.topic)
            }
            Err(_) => format!("table {table} was dropped; the trigger waits for it to exist again"),
        };
        self.state.host.platform_log(Level::Warn, message);
        true
    }

    /// Takes up partitions the topic has and the consumer does not yet: from the committed
    /// position, or where the trigger says to start.
    fn add_partitions(&self, progress: &Progress, positions: &mut Vec<i64>, committed: &mut Vec<i64>) {
        let count = self.shared.log.partitions(&self.topic).unwrap_or(0) as usize;
        while positions.len() < count {
            let partition = positions.len() as u32;
            let log = &self.shared.log;
            let key = trigger_key(&self.state.name, partition);
            let (stored, start) = match self.shared.positions.get(&key, &self.topic) {
                Some(offset) => (offset, offset),
                None => {
                    let start = match self.start {
                        StartPosition::Earliest => log.offsets(&self.topic, partition).map(|o| o.0),
                        StartPosition::Latest => log.offsets(&self.topic, partition).map(|o| o.1),
                        StartPosition::Timestamp { ms } => log.offset_for_time(&self.topic, partition, ms),
                    };
                    (-1, start.unwrap_or(0))
                }
            };
            positions.push(start);
            committed.push(stored);
            let mut progress = progress.lock().unwrap_or_else(|e| e.into_inner());
            progress.push(PartitionProgress { in_flight: BTreeSet::new(), read_to: start });
        }
    }

    /// Commits every partition's first offset not done, where it moved.
    fn commit(&self, progress: &Progress, committed: &mut [i64]) {
        let current: Vec<i64> = {
            let progress = progress.lock().unwrap_or_else(|e| e.into_inner());
            progress.iter().map(PartitionProgress::committable).collect()
        };
        let updates: Vec<_> = current
            .iter()
            .enumerate()
            .filter(|(p, offset)| committed.get(*p) != Some(offset))
            .map(|(p, &offset)| {
                (trigger_key(&self.state.name, p as u32), Some(Position { topic: self.topic.clone(), offset }))
            })
            .collect();
        match self.shared.positions.commit(updates) {
            Ok(()) => {
                for (slot, offset) in committed.iter_mut().zip(current) {
                    *slot = offset;
                }
            }
            Err(e) => self.state.host.platform_log(Level::Warn, format!("cannot commit positions: {e}")),
        }
    }
}

/// A worker invoking batches of the events of its keys, in order.
struct Lane {
    shared: Arc<Shared>,
    state: Arc<FunctionState>,
    rx: Receiver<Event>,
    progress: Progress,
    stop: Arc<Stop>,
    batch_size: usize,
    batch_window: Duration,
}

impl Lane {
    fn run(self) {
        let poll = Duration::from_millis(TRIGGER_POLL_WAIT_MS);
        loop {
            let first = match self.rx.recv_timeout(poll) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) if !self.stop.is_stopped() => continue,
                Err(_) => return,
            };
            let mut batch = vec![first];
            let window_ends = Instant::now() + self.batch_window;
            while batch.len() < self.batch_size {
                let left = window_ends.saturating_duration_since(Instant::now());
                let next = if left.is_zero() { self.rx.try_recv().ok() } else { self.rx.recv_timeout(left).ok() };
                match next {
                    Some(event) => batch.push(event),
                    None => break,
                }
            }
            if self.stop.is_stopped() {
                return;
            }
            match process(&self.shared, &self.state, &batch, &self.stop) {
                Processed::Done { .. } => {
                    let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
                    for event in &batch {
                        if let Some(p) = progress.get_mut(event.partition as usize) {
                            p.in_flight.remove(&event.offset);
                        }
                    }
                }
                Processed::Stopped => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keyed outputs go where Kafka's default partitioner puts them (the murmur2 values of
    /// Kafka's `UtilsTest.testMurmur2`: "21" hashes to -973932308);
    /// null keys take turns.
    #[test]
    fn partition_for_matches_kafka() {
        let round_robin = AtomicU32::new(0);
        assert_eq!(partition_for(Some(b"21"), 10_000, &round_robin), (-973_932_308i32 & 0x7fff_ffff) as u32 % 10_000);
        assert_eq!(partition_for(Some(b"foobar"), 1, &round_robin), 0);
        let spread: Vec<u32> = (0..4).map(|_| partition_for(None, 3, &round_robin)).collect();
        assert_eq!(spread, [0, 1, 2, 0]);
        assert_eq!(partition_for(Some(b"x"), 0, &round_robin), 0);
    }

    #[test]
    fn stop_wakes_a_sleeper() {
        let stop = Arc::new(Stop::default());
        let sleeper = std::thread::spawn({
            let stop = stop.clone();
            move || stop.sleep(Duration::from_secs(600))
        });
        stop.stop();
        assert!(sleeper.join().unwrap());
        assert!(!Stop::default().sleep(Duration::ZERO));
    }

    #[test]
    fn committable_is_the_first_offset_not_done() {
        let mut p = PartitionProgress { in_flight: BTreeSet::from([5, 7]), read_to: 9 };
        assert_eq!(p.committable(), 5);
        p.in_flight.remove(&5);
        assert_eq!(p.committable(), 7);
        p.in_flight.remove(&7);
        assert_eq!(p.committable(), 9);
    }
}
