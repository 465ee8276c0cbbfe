//! [`EngineHost`]: the [`Host`] the function service binds to every function: tables from
//! the SQL engine's materialized state, a bounded ring buffer of log lines per function,
//! and the wall clock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use runnel_sql::Engine;
use serde::Serialize;

use crate::bindings::{Level, Row};
use crate::host::Host;
use crate::limits::LOG_LINES_KEPT_PER_FUNCTION;

/// Who wrote a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// The function itself (host call `log`).
    Function,
    /// The service: failed invocations, retries, dead letters, trigger problems.
    Platform,
}

/// One line of a function's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Increases by one per line of the function, so a follower can ask for what is new.
    pub seq: u64,
    /// Wall-clock milliseconds since the Unix epoch.
    pub at_ms: i64,
    #[serde(serialize_with = "serialize_level")]
    pub level: Level,
    pub source: LogSource,
    pub message: String,
}

/// The lowercase name of a log level, as the WIT spells it.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

fn serialize_level<S: serde::Serializer>(level: &Level, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(level_name(*level))
}

#[derive(Default)]
struct LogRing {
    lines: VecDeque<LogLine>,
    next_seq: u64,
}

/// Serves one function's host calls from a SQL engine, and keeps its log.
pub struct EngineHost {
    engine: Arc<Engine>,
    logs: Mutex<LogRing>,
}

impl EngineHost {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine, logs: Mutex::new(LogRing::default()) }
    }

    /// Kept lines with `at_ms >= since_ms` and `seq >= since_seq`, oldest first.
    pub fn logs(&self, since_ms: i64, since_seq: u64) -> Vec<LogLine> {
        let ring = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        ring.lines.iter().filter(|l| l.at_ms >= since_ms && l.seq >= since_seq).cloned().collect()
    }

    /// Appends a line written by the service about this function.
    pub(crate) fn platform_log(&self, level: Level, message: String) {
        self.push(level, LogSource::Platform, message);
    }

    fn push(&self, level: Level, source: LogSource, message: String) {
        let mut ring = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        if ring.lines.len() >= LOG_LINES_KEPT_PER_FUNCTION {
            ring.lines.pop_front();
        }
        let seq = ring.next_seq;
        ring.next_seq += 1;
        ring.lines.push_back(LogLine { seq, at_ms: now_ms(), level, source, message });
    }
}

impl Host for EngineHost {
    fn table_get(&self, table: &str, key: &[u8]) -> Result<Option<String>, String> {
        match self.engine.table_get(table, key) {
            Ok(row) => Ok(row.map(|v| v.to_string())),
            Err(e) => Err(e.0),
        }
    }

    fn table_scan(&self, table: &str, prefix: &[u8], limit: u32) -> Result<Vec<Row>, String> {
        match self.engine.table_scan(table, prefix, limit as usize) {
            Ok(rows) => Ok(rows.into_iter().map(|(key, v)| Row { key, value: v.to_string() }).collect()),
            Err(e) => Err(e.0),
        }
    }

    fn log(&self, level: Level, message: &str) {
        self.push(level, LogSource::Function, message.to_string());
    }

    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
