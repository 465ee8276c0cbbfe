//! `runnel produce TOPIC`: one record per input line (stdin or `--file`), as text (optionally
//! `KEY<SEP>VALUE`) or as JSON objects. Lines are read on a thread and batched per partition;
//! Produce requests carry many batches and up to five are in flight on one connection, so bulk
//! loads go at the broker's speed while an interactive line is sent within the linger time.
//!
//! Keyed records go to the partition Kafka's Java client picks (murmur2 of the key), so keys
//! land where other Kafka producers would put them; unkeyed records stick to one partition per
//! request, the next request taking the next partition.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use runnel_records::{BatchBuilder, Compression, Record, RecordHeader};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::client_args::{ClientArgs, block_on};
use crate::output::{OutputFormat, base64_decode, print_json};
use crate::time_spec::now_ms;

/// Uncompressed bytes of one partition's batch before it is sent (under Kafka's default
/// max.message.bytes of 1 MiB).
const BATCH_BYTES_MAX: usize = 512 << 10;
/// Bytes of records in one Produce request before it is sent.
const REQUEST_BYTES_MAX: usize = 4 << 20;
/// Lines the reader thread hands over at a time.
const CHUNK_LINES_MAX: usize = 1000;
/// Chunks waiting between the reader thread and the producer (bounded: the reader waits).
const CHUNKS_QUEUED_MAX: usize = 16;
/// How long a partial request waits for more lines before it is sent (Kafka's linger.ms).
const LINGER: Duration = Duration::from_millis(5);
/// Longest input line accepted.
const LINE_BYTES_MAX: usize = 16 << 20;
/// Per-record overhead counted towards batch sizes (varints, attributes, deltas).
const RECORD_OVERHEAD_BYTES: usize = 16;

#[derive(Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Topic to write to (it must exist: see `runnel topic create`).
    topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Split each text line at the first SEP into key and value (lines without it: no key).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every record, as key=value (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = crate::topic::parse_key_value)]
    headers: Vec<(String, String)>,
    /// Input format: text lines, or one JSON object per line:
    /// {"key": .., "value": .., "headers": {..}, "partition": .., "timestamp": ms}.
    /// Keys and values are strings, null, {"base64": ".."} or any JSON (stored as its text);
    /// "topic" and "offset" are ignored, so `runnel consume --output json` output can be replayed.
    #[arg(long, value_enum, default_value_t = InputFormat::Text)]
    format: InputFormat,
    /// Write every record to this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Acknowledgement asked of the broker: all, 1 or 0.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: i16,
    /// Batch compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// Summary format.
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum InputFormat {
    Text,
    Json,
}

pub fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        _ => Err(format!("{s:?} is not one of all, 1, 0")),
    }
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    Compression::from_name(s).ok_or_else(|| format!("{s:?} is not one of none, gzip, snappy, lz4, zstd"))
}

/// Fields of a `--format json` line; `topic` and `offset` are accepted and ignored, so that the
/// output of `runnel consume --output json` can be produced again.
const JSON_FIELDS: &[&str] = &["key", "value", "headers", "partition", "timestamp", "topic", "offset"];

/// A parsed input line.
struct Line {
    partition: Option<i32>,
    record: Record,
    payload_bytes: usize,
}

fn json_bytes(v: &Value, what: &str, line: usize) -> anyhow::Result<Option<Bytes>> {
    Ok(match v {
        Value::Null => None,
        Value::String(s) => Some(Bytes::from(s.clone())),
        Value::Object(o) if o.len() == 1 && o.get("base64").is_some_and(Value::is_string) => {
            let text = o.get("base64").and_then(Value::as_str).unwrap_or_default();
            Some(Bytes::from(
                base64_decode(text).map_err(|e| anyhow::anyhow!("line {line}: invalid base64 {what}: {e}"))?,
            ))
        }
        other => Some(Bytes::from(other.to_string())),
    })
}

fn parse_line(args: &ProduceArgs, raw: Vec<u8>, number: usize, now: i64) -> anyhow::Result<Option<Line>> {
    let mut line = Line { partition: None, record: Record::new(None::<Bytes>, None::<Bytes>), payload_bytes: 0 };
    match args.format {
        InputFormat::Text => {
            let (key, value) = match &args.key_separator {
                Some(sep) => match find(&raw, sep.as_bytes()) {
                    Some(at) => {
                        (Some(Bytes::copy_from_slice(&raw[..at])), Bytes::copy_from_slice(&raw[at + sep.len()..]))
                    }
                    None => (None, Bytes::from(raw)),
                },
                None => (None, Bytes::from(raw)),
            };
            line.record = Record::new(key, Some(value)).at(now);
        }
        InputFormat::Json => {
            if raw.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            let v: Value = serde_json::from_slice(&raw).with_context(|| format!("line {number}: invalid JSON"))?;
            let Value::Object(o) = v else { bail!("line {number}: expected a JSON object") };
            for field in o.keys() {
                if !JSON_FIELDS.contains(&field.as_str()) {
                    bail!(
                        "line {number}: unknown field {field:?} (expected key, value, headers, partition, timestamp)"
                    );
                }
            }
            let key = json_bytes(o.get("key").unwrap_or(&Value::Null), "key", number)?;
            let value = json_bytes(o.get("value").unwrap_or(&Value::Null), "value", number)?;
            let timestamp = match o.get("timestamp") {
                None | Some(Value::Null) => now,
                Some(t) => {
                    t.as_i64().with_context(|| format!("line {number}: timestamp must be epoch milliseconds"))?
                }
            };
            line.record = Record::new(key, value).at(timestamp);
            if let Some(p) = o.get("partition").filter(|p| !p.is_null()) {
                let p = p.as_i64().and_then(|p| i32::try_from(p).ok());
                line.partition = Some(p.with_context(|| format!("line {number}: partition must be an integer"))?);
            }
            match o.get("headers") {
                None | Some(Value::Null) => {}
                Some(Value::Object(headers)) => {
                    for (k, v) in headers {
                        let v = json_bytes(v, "header", number)?;
                        line.record.headers.push(RecordHeader { key: k.clone(), value: v });
                    }
                }
                Some(_) => bail!("line {number}: headers must be an object"),
            }
        }
    }
    for (k, v) in &args.headers {
        line.record.headers.push(RecordHeader { key: k.clone(), value: Some(Bytes::from(v.clone())) });
    }
    line.payload_bytes =
        line.record.key.as_ref().map_or(0, Bytes::len) + line.record.value.as_ref().map_or(0, Bytes::len);
    Ok(Some(line))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads lines on a thread (stdin and files block) and hands them over in chunks.
fn spawn_reader(
    input: Box<dyn Read + Send>,
    tx: mpsc::Sender<anyhow::Result<Vec<Vec<u8>>>>,
    read_bytes: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(256 << 10, input);
        let mut chunk = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = match (&mut reader).take(LINE_BYTES_MAX as u64 + 1).read_until(b'\n', &mut line) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.blocking_send(Err(anyhow::Error::from(e).context("cannot read the input")));
                    return;
                }
            };
            if n == 0 {
                break;
            }
            read_bytes.fetch_add(n as u64, Ordering::Relaxed);
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            } else if line.len() > LINE_BYTES_MAX {
                let _ = tx.blocking_send(Err(anyhow::anyhow!("an input line is longer than {LINE_BYTES_MAX} bytes")));
                return;
            }
            chunk.push(line);
            // Hand over when the chunk is full or the next read would wait for input.
            if (chunk.len() >= CHUNK_LINES_MAX || reader.buffer().is_empty())
                && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err()
            {
                return;
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(chunk));
        }
    })
}

/// Batches being filled, per partition.
#[derive(Default)]
struct Accumulator {
    batches: BTreeMap<i32, (BatchBuilder, usize)>,
    bytes: usize,
}

impl Accumulator {
    fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Adds a record; true when the request should be sent.
    fn add(&mut self, partition: i32, record: Record) -> bool {
        let size = record.key.as_ref().map_or(0, Bytes::len)
            + record.value.as_ref().map_or(0, Bytes::len)
            + record.headers.iter().map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len)).sum::<usize>()
            + RECORD_OVERHEAD_BYTES;
        let (builder, bytes) = self.batches.entry(partition).or_insert_with(|| (BatchBuilder::new(), 0));
        builder.push(record);
        *bytes += size;
        self.bytes += size;
        *bytes >= BATCH_BYTES_MAX || self.bytes >= REQUEST_BYTES_MAX
    }

    fn take(&mut self, compression: Compression) -> anyhow::Result<(Vec<(i32, Bytes)>, u64)> {
        let mut out = Vec::with_capacity(self.batches.len());
        let mut records = 0u64;
        for (partition, (builder, _)) in std::mem::take(&mut self.batches) {
            records += builder.len() as u64;
            out.push((partition, builder.build(compression).context("cannot compress a batch")?));
        }
        self.bytes = 0;
        Ok((out, records))
    }
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    block_on(produce(args))
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let input: Box<dyn Read + Send> = match &args.file {
        Some(path) => Box::new(std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?),
        None => Box::new(std::io::stdin()),
    };
    let input_size = args.file.as_ref().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len());
    let mut client = args.client.connect().await?;
    let topic = client.topic(&args.topic).await.map_err(|e| {
        if e.kafka().is_some_and(|k| k.code == 3) {
            anyhow::anyhow!(
                "topic {:?} does not exist\nhint: create it with `runnel topic create {}`",
                args.topic,
                args.topic
            )
        } else {
            e.into()
        }
    })?;
    let partitions = topic.partitions.len();
    if partitions == 0 {
        bail!("topic {:?} has no partitions", args.topic);
    }
    let check_partition = |p: i32| {
        if p < 0 || p as usize >= partitions {
            bail!("topic {:?} has no partition {p} (it has {partitions})", args.topic);
        }
        Ok(p)
    };
    if let Some(p) = args.partition {
        check_partition(p)?;
    }
    let mut producer = client.producer(&args.topic, args.acks).await?;

    let progress = if std::io::stderr().is_terminal() {
        let bar = match input_size {
            Some(size) => ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let template = if input_size.is_some() {
            "{wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta}) {msg}"
        } else {
            "{spinner} {binary_bytes} read ({binary_bytes_per_sec}) {msg} [{elapsed}]"
        };
        bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };

    let read_bytes = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::channel(CHUNKS_QUEUED_MAX);
    let reader = spawn_reader(input, tx, read_bytes.clone());
    let start = Instant::now();
    let mut accumulator = Accumulator::default();
    let mut sent_records = 0u64;
    let mut payload_bytes = 0u64;
    let mut acked_batches = 0u64;
    let mut line_number = 0usize;
    let mut sticky = 0usize;
    let result: anyhow::Result<()> = async {
        loop {
            let chunk = if accumulator.is_empty() {
                rx.recv().await
            } else {
                match tokio::time::timeout(LINGER, rx.recv()).await {
                    Ok(chunk) => chunk,
                    Err(_) => {
                        let (batches, records) = accumulator.take(args.compression)?;
                        acked_batches += producer.send(&args.topic, batches).await?.len() as u64;
                        sent_records += records;
                        sticky += 1;
                        continue;
                    }
                }
            };
            let Some(chunk) = chunk else { break };
            let now = now_ms();
            for raw in chunk? {
                line_number += 1;
                let Some(line) = parse_line(&args, raw, line_number, now)? else { continue };
                payload_bytes += line.payload_bytes as u64;
                let partition = match (args.partition, line.partition, &line.record.key) {
                    (Some(p), _, _) => p,
                    (None, Some(p), _) => check_partition(p)?,
                    (None, None, Some(key)) => runnel_records::partition_for_key(key, partitions as u32) as i32,
                    (None, None, None) => (sticky % partitions) as i32,
                };
                if accumulator.add(partition, line.record) {
                    let (batches, records) = accumulator.take(args.compression)?;
                    acked_batches += producer.send(&args.topic, batches).await?.len() as u64;
                    sent_records += records;
                    sticky += 1;
                }
            }
            progress.set_position(read_bytes.load(Ordering::Relaxed));
            progress.set_message(format!("{} records", HumanCount(sent_records)));
        }
        if !accumulator.is_empty() {
            let (batches, records) = accumulator.take(args.compression)?;
            acked_batches += producer.send(&args.topic, batches).await?.len() as u64;
            sent_records += records;
        }
        acked_batches += producer.flush().await?.len() as u64;
        Ok(())
    }
    .await;
    drop(rx);
    let _ = reader.join();
    progress.finish_and_clear();
    result?;
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let records_per_sec = sent_records as f64 / elapsed;
    let bytes_per_sec = payload_bytes as f64 / elapsed;
    match args.output {
        OutputFormat::Json => print_json(&json!({
            "topic": args.topic,
            "records": sent_records,
            "bytes": payload_bytes,
            "batches_acknowledged": acked_batches,
            "acks": match args.acks { -1 => "all", 0 => "0", _ => "1" },
            "duration_secs": elapsed,
            "records_per_sec": records_per_sec,
            "bytes_per_sec": bytes_per_sec,
        })),
        OutputFormat::Table => println!(
            "produced {} records ({}) to {} in {:.2} s: {} records/s, {}/s",
            HumanCount(sent_records),
            HumanBytes(payload_bytes),
            args.topic,
            elapsed,
            HumanCount(records_per_sec as u64),
            HumanBytes(bytes_per_sec as u64)
        ),
    }
    Ok(())
}
