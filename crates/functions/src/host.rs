//! The [`Host`] trait: what the rest of runnel provides to functions (tables, logs, clock).
//!
//! The runtime checks every argument a guest passes against the bounds in
//! [`limits`](crate::limits) before it calls the host, and caps what the host returns, so
//! an implementation only does the lookup. Events a guest produces never reach the host
//! directly: the runtime buffers them with the invocation's output so that a failed (and
//! retried) invocation emits nothing.

use crate::bindings::{Level, Row};

/// Services a function's host calls. One `Host` is bound to a function at deploy and
/// shared by all its invocations, possibly from several threads at once.
///
/// Errors are messages for the guest (`result<_, string>` in the WIT): a missing table, a
/// store failure. They are not traps; the guest decides what to do with them.
pub trait Host: Send + Sync + 'static {
    /// The row of materialized table `table` under `key`, as JSON text.
    fn table_get(&self, table: &str, key: &[u8]) -> Result<Option<String>, String>;

    /// Up to `limit` rows of `table` whose key starts with `prefix`, in key order. `limit`
    /// is already capped at [`TABLE_SCAN_ROWS_MAX`](crate::limits::TABLE_SCAN_ROWS_MAX);
    /// extra rows are dropped.
    fn table_scan(&self, table: &str, prefix: &[u8], limit: u32) -> Result<Vec<Row>, String>;

    /// A guest log line, at most
    /// [`LOG_MESSAGE_BYTES_MAX`](crate::limits::LOG_MESSAGE_BYTES_MAX) long.
    fn log(&self, level: Level, message: &str);

    /// Wall-clock time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}
