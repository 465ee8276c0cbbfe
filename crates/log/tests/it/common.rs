//! Helpers shared by the tests: opening a log on simulated or real storage, building batches,
//! and reading a partition back as decoded records.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use runnel_log::{Log, LogConfig, Partition, SimStorage, TopicConfig};
use runnel_records::{BatchBuilder, BatchHeader, Batches, Compression, Record, decode_records};

/// Where simulated stores live (a path only; nothing touches the real filesystem).
pub const SIM_DIR: &str = "/sim";

pub fn sim_config() -> LogConfig {
    LogConfig::new(SIM_DIR)
}

pub fn open_sim(storage: &SimStorage) -> Arc<Log> {
    open_sim_with(storage, sim_config())
}

pub fn open_sim_with(storage: &SimStorage, config: LogConfig) -> Arc<Log> {
    Log::open_with(config, Arc::new(storage.clone())).expect("open simulated log")
}

/// The data file of segment `base` of partition `index` of `topic` in a simulated store.
pub fn segment_path(topic: &str, index: u32, base: i64) -> PathBuf {
    PathBuf::from(SIM_DIR).join("topics").join(topic).join(index.to_string()).join(format!("{base:020}.log"))
}

/// A new topic with one partition and `config`, and that partition.
pub fn topic(log: &Log, name: &str, config: TopicConfig) -> Arc<Partition> {
    log.create_topic(name, 1, config).expect("create topic");
    log.partition(name, 0).expect("partition 0")
}

/// A record with a key, a value and a timestamp.
pub fn rec(key: &str, value: &str, ts: i64) -> Record {
    Record::new(Some(key.as_bytes().to_vec()), Some(value.as_bytes().to_vec())).at(ts)
}

/// A batch of records, uncompressed, without a producer id.
pub fn batch(records: &[Record]) -> Bytes {
    batch_with(records, Compression::None, None)
}

/// A batch of records with a codec and optionally an idempotent producer's (id, epoch, sequence).
pub fn batch_with(records: &[Record], codec: Compression, producer: Option<(i64, i16, i32)>) -> Bytes {
    let mut b = match producer {
        Some((id, epoch, seq)) => BatchBuilder::new().producer(id, epoch, seq),
        None => BatchBuilder::new(),
    };
    for r in records {
        b.push(r.clone());
    }
    b.build(codec).expect("build batch")
}

/// `n` records `k{i}`/`v{i}` with timestamps `ts0 + i`.
pub fn numbered(n: usize, ts0: i64) -> Vec<Record> {
    (0..n).map(|i| rec(&format!("k{i}"), &format!("v{i}"), ts0 + i as i64)).collect()
}

/// Splits a read result into batches and their decoded records.
pub fn decode(bytes: &[u8]) -> Vec<(BatchHeader, Vec<Record>)> {
    Batches::new(bytes)
        .map(|b| {
            let (h, raw) = b.expect("valid batch");
            (h, decode_records(raw, 64 << 20).expect("decodable batch"))
        })
        .collect()
}

/// Every record from the log start to the high watermark, in order.
pub fn read_everything(p: &Partition) -> Vec<Record> {
    let mut out = Vec::new();
    let mut offset = p.log_start_offset();
    loop {
        let r = p.read(offset, 1 << 20).expect("read");
        if r.records.is_empty() {
            return out;
        }
        for (h, records) in decode(&r.records) {
            out.extend(records.into_iter().filter(|r| r.offset >= offset));
            offset = h.next_offset();
        }
    }
}

/// (offset, value as text) of every record.
pub fn values(p: &Partition) -> Vec<(i64, String)> {
    read_everything(p)
        .into_iter()
        .map(|r| (r.offset, r.value.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default()))
        .collect()
}
