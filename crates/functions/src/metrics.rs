//! Per-function counters and the invocation-duration histogram, kept in atomics so lanes
//! update them without locks, and read as a [`MetricsSnapshot`] the HTTP layer renders
//! (`/metrics`, the REST API).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds (inclusive, microseconds) of the invocation-duration histogram's buckets;
/// one more bucket counts everything slower.
pub const DURATION_BUCKETS_US: [u64; 14] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 10_000_000];

const BUCKETS: usize = DURATION_BUCKETS_US.len() + 1;

const _: () = {
    let mut i = 1;
    while i < DURATION_BUCKETS_US.len() {
        assert!(DURATION_BUCKETS_US[i - 1] < DURATION_BUCKETS_US[i]);
        i += 1;
    }
};

/// Live counters of one function.
#[derive(Default)]
pub(crate) struct Metrics {
    pub invocations: AtomicU64,
    pub errors: AtomicU64,
    pub retries: AtomicU64,
    pub dead_letters: AtomicU64,
    pub events: AtomicU64,
    pub outputs: AtomicU64,
    duration_us_sum: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one invocation (successful or not) and how long it took.
    pub fn invoked(&self, duration: Duration) {
        let us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.invocations.fetch_add(1, Ordering::Relaxed);
        self.duration_us_sum.fetch_add(us, Ordering::Relaxed);
        let bucket = DURATION_BUCKETS_US.iter().position(|&bound| us <= bound).unwrap_or(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self, lag: Vec<PartitionLag>) -> MetricsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            invocations: load(&self.invocations),
            errors: load(&self.errors),
            retries: load(&self.retries),
            dead_letters: load(&self.dead_letters),
            events: load(&self.events),
            outputs: load(&self.outputs),
            duration: DurationHistogram {
                bounds_us: DURATION_BUCKETS_US.to_vec(),
                counts: self.buckets.iter().map(load).collect(),
                sum_us: load(&self.duration_us_sum),
            },
            lag: lag.iter().map(|p| p.lag).sum(),
            lag_by_partition: lag,
        }
    }
}

/// A function's metrics at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Calls of the function's handler, including failed ones and retries.
    pub invocations: u64,
    /// Failed invocations (trap, timeout, out of memory, guest error, output not written).
    pub errors: u64,
    /// Invocations that were retries of a failed one.
    pub retries: u64,
    /// Events written to the dead-letter topic.
    pub dead_letters: u64,
    /// Events done: handled successfully or dead-lettered.
    pub events: u64,
    /// Output events written to their topics.
    pub outputs: u64,
    pub duration: DurationHistogram,
    /// Records of the trigger topic not yet committed, over all partitions.
    pub lag: u64,
    pub lag_by_partition: Vec<PartitionLag>,
}

/// Invocation durations: `counts[i]` invocations took at most `bounds_us[i]` microseconds
/// (and more than the bound before); the last count is everything slower. Not cumulative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DurationHistogram {
    pub bounds_us: Vec<u64>,
    pub counts: Vec<u64>,
    pub sum_us: u64,
}

impl DurationHistogram {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Trigger lag of one partition: its end offset minus the function's committed position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub partition: u32,
    pub committed: i64,
    pub end_offset: i64,
    pub lag: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_their_buckets() {
        let m = Metrics::default();
        m.invoked(Duration::from_micros(50));
        m.invoked(Duration::from_micros(51));
        m.invoked(Duration::from_secs(100));
        let s = m.snapshot(vec![]);
        assert_eq!(s.invocations, 3);
        assert_eq!(s.duration.counts[0], 1);
        assert_eq!(s.duration.counts[1], 1);
        assert_eq!(s.duration.counts[BUCKETS - 1], 1);
        assert_eq!(s.duration.count(), 3);
    }
}
