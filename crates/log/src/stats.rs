//! Process-wide counters of the log's own work, for the metrics endpoint: how many fsyncs of
//! partition data ran and how long they took (a histogram with fixed buckets).
//!
//! They are global because a process holds one log; reading them never blocks appends (every
//! field is an atomic counter).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the fsync latency buckets, in seconds (Prometheus `le` labels); a last
/// bucket, +Inf, holds the rest.
pub const FSYNC_BUCKETS_SECONDS: [f64; 12] =
    [0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

struct Histogram {
    /// Non-cumulative counts, one per bucket plus +Inf.
    buckets: [AtomicU64; FSYNC_BUCKETS_SECONDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

static FSYNC: Histogram = Histogram {
    buckets: [const { AtomicU64::new(0) }; FSYNC_BUCKETS_SECONDS.len() + 1],
    sum_nanos: AtomicU64::new(0),
    count: AtomicU64::new(0),
};
static FSYNC_FAILURES: AtomicU64 = AtomicU64::new(0);

/// A copy of the fsync latency histogram at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct FsyncSnapshot {
    /// `(upper bound in seconds, cumulative count)` per bucket, as Prometheus exposes them; the
    /// +Inf bucket is `count`.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
    /// fsyncs that returned an error (each took a partition offline).
    pub failures: u64,
}

/// Records one fsync of partition data that took `elapsed`.
pub(crate) fn record_fsync(elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    let bucket = FSYNC_BUCKETS_SECONDS.iter().position(|&le| seconds <= le).unwrap_or(FSYNC_BUCKETS_SECONDS.len());
    FSYNC.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    FSYNC.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    FSYNC.count.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn record_fsync_failure() {
    FSYNC_FAILURES.fetch_add(1, Ordering::Relaxed);
}

/// The fsync latency histogram so far (since the process started).
pub fn fsync_latency() -> FsyncSnapshot {
    let mut cumulative = 0;
    let buckets = FSYNC_BUCKETS_SECONDS
        .iter()
        .zip(&FSYNC.buckets)
        .map(|(&le, n)| {
            cumulative += n.load(Ordering::Relaxed);
            (le, cumulative)
        })
        .collect();
    let count = cumulative + FSYNC.buckets[FSYNC_BUCKETS_SECONDS.len()].load(Ordering::Relaxed);
    FsyncSnapshot {
        buckets,
        sum_seconds: FSYNC.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        count,
        failures: FSYNC_FAILURES.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_everything() {
        let before = fsync_latency();
        record_fsync(Duration::from_micros(50));
        record_fsync(Duration::from_millis(3));
        record_fsync(Duration::from_secs(5));
        let after = fsync_latency();
        assert_eq!(after.count - before.count, 3);
        // 50 µs falls in the first bucket, so every cumulative bucket grew by at least one.
        for ((_, a), (_, b)) in after.buckets.iter().zip(&before.buckets) {
            assert!(a - b >= 1);
        }
        // 5 s is beyond the last bound: only the +Inf bucket (count) holds it.
        let last = after.buckets.last().unwrap().1 - before.buckets.last().unwrap().1;
        assert_eq!(last, 2);
        assert!(after.sum_seconds - before.sum_seconds >= 5.0);
    }
}
