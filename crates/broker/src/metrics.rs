//! The broker's metrics and their Prometheus text exposition (format 0.0.4), hand-written: a
//! few counters, gauges and fixed-bucket histograms do not justify a metrics library.
//!
//! Counters are atomics updated on the request path (bytes and records in and out per topic,
//! request latency per Kafka API, open connections). Everything else is computed when the
//! metrics are scraped: topics and partitions from the log, consumer lag from the group
//! coordinator's committed offsets and the partitions' high watermarks, fsync latency from
//! [`runnel_log::stats::fsync_latency`]. Records are counted from batch headers and append
//! results, never by decoding records.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use runnel_log::Log;
use runnel_records::BatchHeader;

use crate::group::GroupCoordinator;

/// Upper bounds of the request latency buckets, in seconds (Prometheus `le` labels); fetches
/// long-poll for up to a minute, hence the long tail.
pub const REQUEST_BUCKETS_SECONDS: [f64; 16] =
    [0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// API keys below this have a latency histogram (Kafka's keys run to about 80).
const API_KEYS_MAX: usize = 128;
/// Most topics with their own counters; produce and fetch of further topics are not counted
/// (a topic is created by the log before it is counted, and topics are at most this many in
/// practice: the counter map cannot grow without limit).
pub const TOPICS_COUNTED_MAX: usize = 100_000;

/// One latency histogram with fixed buckets.
struct Histogram {
    /// Non-cumulative counts, one per bucket plus +Inf.
    buckets: [AtomicU64; REQUEST_BUCKETS_SECONDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; REQUEST_BUCKETS_SECONDS.len() + 1],
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket =
            REQUEST_BUCKETS_SECONDS.iter().position(|&le| seconds <= le).unwrap_or(REQUEST_BUCKETS_SECONDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Bytes and records written to and read from one topic.
#[derive(Default)]
struct TopicCounters {
    bytes_in: AtomicU64,
    records_in: AtomicU64,
    bytes_out: AtomicU64,
    records_out: AtomicU64,
}

/// The broker's request-path counters; one per broker, shared with the HTTP API.
pub struct Metrics {
    topics: RwLock<HashMap<String, Arc<TopicCounters>>>,
    requests: [Histogram; API_KEYS_MAX],
    connections: AtomicI64,
    connections_accepted: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// What a topic's counters say at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicTotals {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            topics: RwLock::new(HashMap::new()),
            requests: [const { Histogram::new() }; API_KEYS_MAX],
            connections: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
        }
    }

    fn topic(&self, topic: &str) -> Option<Arc<TopicCounters>> {
        if let Some(c) = self.topics.read().unwrap_or_else(|e| e.into_inner()).get(topic) {
            return Some(c.clone());
        }
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        if topics.len() >= TOPICS_COUNTED_MAX && !topics.contains_key(topic) {
            return None;
        }
        Some(topics.entry(topic.to_string()).or_default().clone())
    }

    /// Counts records appended to `topic` (produce).
    pub fn record_produced(&self, topic: &str, records: u64, bytes: u64) {
        if let Some(c) = self.topic(topic) {
            c.records_in.fetch_add(records, Ordering::Relaxed);
            c.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts records sent to a consumer (fetch).
    pub fn record_fetched(&self, topic: &str, records: u64, bytes: u64) {
        if let Some(c) = self.topic(topic) {
            c.records_out.fetch_add(records, Ordering::Relaxed);
            c.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// The counters of `topic` (zero if it was never produced to nor fetched from).
    pub fn topic_totals(&self, topic: &str) -> TopicTotals {
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.get(topic).map_or_else(TopicTotals::default, |c| TopicTotals {
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            records_in: c.records_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            records_out: c.records_out.load(Ordering::Relaxed),
        })
    }

    /// Forgets a deleted topic's counters.
    pub fn forget_topic(&self, topic: &str) {
        self.topics.write().unwrap_or_else(|e| e.into_inner()).remove(topic);
    }

    pub(crate) fn record_request(&self, api_key: i16, elapsed: Duration) {
        if let Some(h) = usize::try_from(api_key).ok().and_then(|k| self.requests.get(k)) {
            h.record(elapsed);
        }
    }

    /// Marks a Kafka connection open until the returned guard is dropped.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    /// Kafka connections open now.
    pub fn connections(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }
}

pub(crate) struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Records in the whole batches of `records` (as the log returns them), counting only offsets
/// at or after `from_offset` of a first batch that starts before it. Reads batch headers only.
pub fn records_in_batches(records: &[u8], from_offset: i64) -> u64 {
    let mut pos = 0usize;
    let mut total = 0u64;
    while let Some(rest) = records.get(pos..) {
        let Ok(header) = BatchHeader::parse(rest) else { break };
        if header.size == 0 || header.size > rest.len() {
            break;
        }
        let count = u64::try_from(header.record_count).unwrap_or(0);
        let at_or_after = u64::try_from(header.last_offset() - from_offset + 1).unwrap_or(0);
        total += count.min(at_or_after);
        pos += header.size;
    }
    total
}

/// Escapes a label value for the text format: backslash, double quote and line feed.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Label pairs as the text format writes them after a metric name: `{k="v",...}`, or
/// nothing when there are none.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
    format!("{{{}}}", inner.join(","))
}

/// A float as the text format spells it.
pub fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() }
    } else if v.is_nan() {
        "NaN".to_string()
    } else {
        format!("{v}")
    }
}

/// The `# HELP` and `# TYPE` lines that open a metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One histogram's series: a `_bucket` line per cumulative `(le, count)`, then `+Inf`, `_sum`
/// and `_count`.
pub fn histogram(
    out: &mut String,
    name: &str,
    label: &[(&str, &str)],
    cumulative: &[(f64, u64)],
    sum: f64,
    count: u64,
) {
    for (le, n) in cumulative {
        let le = float(*le);
        let mut l = label.to_vec();
        l.push(("le", &le));
        let _ = writeln!(out, "{name}_bucket{} {n}", labels(&l));
    }
    let mut l = label.to_vec();
    l.push(("le", "+Inf"));
    let _ = writeln!(out, "{name}_bucket{} {count}", labels(&l));
    let _ = writeln!(out, "{name}_sum{} {}", labels(label), float(sum));
    let _ = writeln!(out, "{name}_count{} {count}", labels(label));
}

/// Every metric in the Prometheus text format 0.0.4. Blocking only for the short lock-held
/// reads of the log's and the coordinator's state (no I/O).
pub fn encode(metrics: &Metrics, log: &Log, groups: &GroupCoordinator) -> String {
    let mut out = String::new();
    let topics = log.topics();

    let counted: Vec<(String, TopicTotals)> = {
        let mut names: Vec<String> = metrics.topics.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        names.sort();
        names.into_iter().map(|n| (n.clone(), metrics.topic_totals(&n))).collect()
    };
    type Counter = (&'static str, &'static str, fn(&TopicTotals) -> u64);
    let per_topic: [Counter; 4] = [
        ("runnel_topic_bytes_in_total", "Bytes of record batches appended to the topic.", |t| t.bytes_in),
        ("runnel_topic_records_in_total", "Records appended to the topic.", |t| t.records_in),
        ("runnel_topic_bytes_out_total", "Bytes of record batches sent to consumers of the topic.", |t| t.bytes_out),
        ("runnel_topic_records_out_total", "Records sent to consumers of the topic.", |t| t.records_out),
    ];
    for (name, help, get) in per_topic {
        family(&mut out, name, "counter", help);
        for (topic, totals) in &counted {
            let _ = writeln!(out, "{name}{} {}", labels(&[("topic", topic)]), get(totals));
        }
    }

    let name = "runnel_request_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time to answer a Kafka request, by API (from its frame read to its response).",
    );
    for (key, h) in metrics.requests.iter().enumerate() {
        let count = h.count.load(Ordering::Relaxed);
        if count == 0 {
            continue;
        }
        let api = i16::try_from(key).ok().and_then(|k| ApiKey::try_from(k).ok());
        let api = api.map_or_else(|| key.to_string(), |k| format!("{k:?}"));
        let mut cumulative = Vec::with_capacity(REQUEST_BUCKETS_SECONDS.len());
        let mut running = 0;
        for (le, n) in REQUEST_BUCKETS_SECONDS.iter().zip(&h.buckets) {
            running += n.load(Ordering::Relaxed);
            cumulative.push((*le, running));
        }
        let count = running + h.buckets[REQUEST_BUCKETS_SECONDS.len()].load(Ordering::Relaxed);
        let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        histogram(&mut out, name, &[("api", &api)], &cumulative, sum, count);
    }

    family(&mut out, "runnel_connections", "gauge", "Kafka client connections open now.");
    let _ = writeln!(out, "runnel_connections {}", metrics.connections());
    family(&mut out, "runnel_connections_accepted_total", "counter", "Kafka client connections accepted.");
    let _ = writeln!(out, "runnel_connections_accepted_total {}", metrics.connections_accepted.load(Ordering::Relaxed));

    family(&mut out, "runnel_topics", "gauge", "Topics, internal ones included.");
    let _ = writeln!(out, "runnel_topics {}", topics.len());
    family(&mut out, "runnel_partitions", "gauge", "Partitions over all topics, internal ones included.");
    let _ = writeln!(out, "runnel_partitions {}", topics.iter().map(|t| u64::from(t.partitions)).sum::<u64>());

    let fsync = runnel_log::stats::fsync_latency();
    let name = "runnel_log_fsync_duration_seconds";
    family(&mut out, name, "histogram", "Time of each fsync of partition data.");
    histogram(&mut out, name, &[], &fsync.buckets, fsync.sum_seconds, fsync.count);
    family(
        &mut out,
        "runnel_log_fsync_failures_total",
        "counter",
        "fsyncs that failed (each took a partition offline).",
    );
    let _ = writeln!(out, "runnel_log_fsync_failures_total {}", fsync.failures);

    let summaries = groups.list_groups_summary();
    family(&mut out, "runnel_consumer_groups", "gauge", "Consumer groups known to the coordinator.");
    let _ = writeln!(out, "runnel_consumer_groups {}", summaries.len());
    let name = "runnel_consumer_group_lag";
    family(&mut out, name, "gauge", "Records between a group's committed offset and the partition's high watermark.");
    for summary in &summaries {
        for committed in groups.committed_offsets(&summary.group_id) {
            let Some(partition) =
                u32::try_from(committed.partition).ok().and_then(|p| log.partition(&committed.topic, p))
            else {
                continue;
            };
            let lag = (partition.high_watermark() - committed.offset).max(0);
            let p = committed.partition.to_string();
            let l = labels(&[("group", &summary.group_id), ("topic", &committed.topic), ("partition", &p)]);
            let _ = writeln!(out, "{name}{l} {lag}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_records::{BatchBuilder, Compression, Record};

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("group", "a\"b\\c\nd")]), "{group=\"a\\\"b\\\\c\\nd\"}");
    }

    #[test]
    fn records_are_counted_from_batch_headers() {
        let mut b = BatchBuilder::new();
        for i in 0..5 {
            b.push(Record::new(Some(format!("k{i}")), Some("v")));
        }
        let batch = b.build(Compression::None).unwrap();
        let mut two = batch.to_vec();
        two.extend_from_slice(&batch);
        // Both batches claim offsets 0..=4; from offset 3 the first holds two.
        assert_eq!(records_in_batches(&batch, 0), 5);
        assert_eq!(records_in_batches(&two, 3), 4);
        assert_eq!(records_in_batches(&two[..20], 0), 0);
    }
}
