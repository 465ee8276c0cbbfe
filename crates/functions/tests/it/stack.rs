//! A whole runnel stack in a temporary directory for the service tests: the embedded log,
//! the SQL engine over it, and a [`FunctionService`], with helpers to produce, read and
//! poll with a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use runnel_functions::{Clock, FunctionConfig, FunctionInfo, FunctionService, ServiceConfig};
use runnel_log::{Log, LogConfig};
use runnel_sql::eventlog::{EventLog, InProcessLog, LogRecord, OutRecord};
use runnel_sql::{Engine, Session};

/// Longest a test waits for a condition before it fails.
pub const DEADLINE: Duration = Duration::from_secs(40);
/// Pause between two checks of a polled condition.
const POLL: Duration = Duration::from_millis(5);

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub events: Arc<InProcessLog>,
    pub engine: Arc<Engine>,
    pub service: Option<FunctionService>,
    /// The clock the service's timer triggers read.
    pub clock: Clock,
}

impl Stack {
    pub fn new() -> Stack {
        Stack::with_clock(Clock::system())
    }

    /// A stack whose timer triggers read `clock`.
    pub fn with_clock(clock: Clock) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(LogConfig::new(dir.path().join("log"))).unwrap();
        let events = Arc::new(InProcessLog::new(log.clone()));
        let engine = Engine::open(events.clone()).unwrap();
        let mut stack = Stack { dir, events, engine, service: None, clock };
        stack.open_service();
        stack
    }

    pub fn open_service(&mut self) {
        let config = ServiceConfig { clock: self.clock.clone(), ..ServiceConfig::new(self.dir.path()) };
        self.service =
            Some(FunctionService::open(config, self.events.clone(), self.engine.clone()).expect("service opens"));
    }

    /// Stops the service (committing its positions) and opens it again from the log.
    pub fn restart_service(&mut self) {
        drop(self.service.take());
        self.open_service();
    }

    pub fn service(&self) -> &FunctionService {
        self.service.as_ref().expect("service is open")
    }

    pub fn sql(&self, sql: &str) {
        let mut session = Session::default();
        self.engine.execute(sql, &mut session).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.events.create_topic(topic, partitions, false).unwrap();
    }

    /// A `users` table with rows for alice and bob, populated through SQL; waits until it
    /// is materialized.
    pub fn users_table(&self) {
        self.sql(
            "CREATE TABLE users (id STRING PRIMARY KEY, name STRING) \
             WITH (kafka_topic='users', value_format='JSON', partitions=1); \
             INSERT INTO users (id, name) VALUES ('alice', 'Alice'); \
             INSERT INTO users (id, name) VALUES ('bob', 'Bob');",
        );
        self.wait_until("users table materialized", || {
            ["alice", "bob"].iter().all(|k| matches!(self.engine.table_get("users", k.as_bytes()), Ok(Some(_))))
        });
    }

    pub fn produce(&self, topic: &str, partition: u32, records: &[(&str, &str)]) {
        let records: Vec<OutRecord> = records
            .iter()
            .map(|(k, v)| OutRecord {
                key: Some(Bytes::from(k.to_string())),
                value: Some(Bytes::from(v.to_string())),
                headers: Vec::new(),
                timestamp: 1_700_000_000_000,
            })
            .collect();
        self.events.append(topic, partition, &records, false).unwrap();
    }

    /// Every record of every partition of `topic`, partition by partition.
    pub fn read_topic(&self, topic: &str) -> Vec<LogRecord> {
        let mut out = Vec::new();
        for partition in 0..self.events.partitions(topic).unwrap_or(0) {
            let (mut offset, end) = self.events.offsets(topic, partition).unwrap();
            while offset < end {
                let batch = self.events.read(topic, partition, offset, 1 << 20).unwrap();
                out.extend(batch.records);
                offset = batch.next_offset;
            }
        }
        out
    }

    /// Records in `topic` (end offsets minus start offsets: these topics have no
    /// transactions and no compaction).
    pub fn count(&self, topic: &str) -> usize {
        (0..self.events.partitions(topic).unwrap_or(0))
            .map(|p| self.events.offsets(topic, p).map(|(start, end)| (end - start) as usize).unwrap_or(0))
            .sum()
    }

    pub fn describe(&self, name: &str) -> FunctionInfo {
        self.service().describe(name).unwrap_or_else(|e| panic!("describe {name}: {e}"))
    }

    /// Polls `done` until it holds; fails the test after [`DEADLINE`].
    pub fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            std::thread::sleep(POLL);
        }
    }

    /// Waits until function `name` has committed everything on its trigger topic.
    pub fn wait_caught_up(&self, name: &str) {
        self.wait_until(&format!("{name} caught up"), || {
            let info = self.describe(name);
            info.metrics.lag == 0 && !info.metrics.lag_by_partition.is_empty()
        });
    }
}

/// A config with a topic trigger and retries fast enough for tests.
pub fn fast(topic: &str) -> FunctionConfig {
    FunctionConfig {
        trigger: runnel_functions::Trigger::topic(topic),
        retries: 1,
        retry_backoff_initial_ms: 1,
        retry_backoff_max_ms: 2,
        batch_window_ms: 1,
        ..FunctionConfig::default()
    }
}

pub fn header<'a>(record: &'a LogRecord, key: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
